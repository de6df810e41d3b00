-- Cost ledger (SPEC §2.4). Amounts are integer micro-USD so sums are exact. A row is a
-- reservation (`settled` = 0: `reserved` held while the call is in flight) or a settled charge
-- (`spent`). Reservations older than the stale horizon are ignored by the checks, so a crash
-- mid-request cannot hold budget forever.
CREATE TABLE IF NOT EXISTS cost_ledger (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    day        TEXT NOT NULL,
    month      TEXT NOT NULL,
    user_id    TEXT,
    key_id     TEXT,
    model      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    reserved   INTEGER NOT NULL DEFAULT 0,
    spent      INTEGER NOT NULL DEFAULT 0,
    settled    INTEGER NOT NULL DEFAULT 0,
    source     TEXT NOT NULL DEFAULT 'request',
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cost_ledger_day ON cost_ledger (day);
CREATE INDEX IF NOT EXISTS cost_ledger_month ON cost_ledger (month);
CREATE UNIQUE INDEX IF NOT EXISTS cost_ledger_import ON cost_ledger (day, source) WHERE source = 'import';

-- API keys (SPEC §2.6): only a SHA-256 of the secret part is stored; `id` is public.
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    hash         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
