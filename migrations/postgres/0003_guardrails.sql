-- Cost ledger (SPEC §2.4), shared by every instance. Amounts are integer micro-USD. See the
-- SQLite migration for the meaning of the columns; reservations are serialised across
-- instances with a transaction-scoped advisory lock.
CREATE TABLE IF NOT EXISTS cost_ledger (
    id         BIGSERIAL PRIMARY KEY,
    day        TEXT NOT NULL,
    month      TEXT NOT NULL,
    user_id    TEXT,
    key_id     TEXT,
    model      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    reserved   BIGINT NOT NULL DEFAULT 0,
    spent      BIGINT NOT NULL DEFAULT 0,
    settled    BOOLEAN NOT NULL DEFAULT FALSE,
    source     TEXT NOT NULL DEFAULT 'request',
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cost_ledger_day ON cost_ledger (day);
CREATE INDEX IF NOT EXISTS cost_ledger_month ON cost_ledger (month);
CREATE UNIQUE INDEX IF NOT EXISTS cost_ledger_import ON cost_ledger (day, source) WHERE source = 'import';

CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    hash         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
