-- Vault secrets: `value` is a Fernet token, or legacy plaintext when `encrypted` is false.
-- Timestamps are Unix seconds, as in the SQLite store.
CREATE TABLE IF NOT EXISTS secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    encrypted  BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Small durable facts, such as an unfinished key rotation.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
