-- Vault secrets: `value` is a Fernet token, or legacy plaintext when `encrypted` = 0.
CREATE TABLE IF NOT EXISTS secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    encrypted  INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Small durable facts, such as an unfinished key rotation.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
