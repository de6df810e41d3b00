-- Amounts range-checked in the schema too (issue 14): every spent and reserved amount is an
-- integer in 0..=MAX_MICROS (1000000000000000 micro-USD, one billion USD). Before this, a client's
-- `max_tokens` could overflow a reservation: SQLite then stored a float (and every later read
-- failed) or a wrapped negative total let every request through. Existing rows are clamped
-- into the range, the totals rebuilt from the ledger rows (TOTAL() sums in floats, exact below
-- 2^53, so no sum can overflow), and CHECK constraints refuse any later out-of-range write.
CREATE TABLE cost_ledger_checked (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    day        TEXT NOT NULL,
    month      TEXT NOT NULL,
    user_id    TEXT,
    key_id     TEXT,
    model      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    reserved   INTEGER NOT NULL DEFAULT 0
               CHECK (typeof(reserved) = 'integer' AND reserved BETWEEN 0 AND 1000000000000000),
    spent      INTEGER NOT NULL DEFAULT 0
               CHECK (typeof(spent) = 'integer' AND spent BETWEEN 0 AND 1000000000000000),
    settled    INTEGER NOT NULL DEFAULT 0,
    source     TEXT NOT NULL DEFAULT 'request',
    created_at INTEGER NOT NULL
);
INSERT INTO cost_ledger_checked
SELECT id, day, month, user_id, key_id, model, provider,
       MIN(MAX(CAST(reserved AS INTEGER), 0), 1000000000000000),
       MIN(MAX(CAST(spent AS INTEGER), 0), 1000000000000000),
       settled, source, created_at
FROM cost_ledger;
DROP TABLE cost_ledger;
ALTER TABLE cost_ledger_checked RENAME TO cost_ledger;
CREATE INDEX cost_ledger_day ON cost_ledger (day);
CREATE INDEX cost_ledger_month ON cost_ledger (month);
CREATE UNIQUE INDEX cost_ledger_import ON cost_ledger (day, source) WHERE source = 'import';
CREATE INDEX cost_ledger_open ON cost_ledger (settled, created_at);

DROP TABLE cost_totals;
CREATE TABLE cost_totals (
    scope    TEXT NOT NULL,
    period   TEXT NOT NULL,
    spent    INTEGER NOT NULL DEFAULT 0
             CHECK (typeof(spent) = 'integer' AND spent BETWEEN 0 AND 1000000000000000),
    reserved INTEGER NOT NULL DEFAULT 0
             CHECK (typeof(reserved) = 'integer' AND reserved BETWEEN 0 AND 1000000000000000),
    PRIMARY KEY (scope, period)
);
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'global', day, CAST(MIN(TOTAL(spent), 1000000000000000) AS INTEGER),
       CAST(MIN(TOTAL(CASE WHEN settled = 0 THEN reserved ELSE 0 END), 1000000000000000) AS INTEGER)
FROM cost_ledger GROUP BY day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'global', month, CAST(MIN(TOTAL(spent), 1000000000000000) AS INTEGER),
       CAST(MIN(TOTAL(CASE WHEN settled = 0 THEN reserved ELSE 0 END), 1000000000000000) AS INTEGER)
FROM cost_ledger GROUP BY month;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'user:' || user_id, day, CAST(MIN(TOTAL(spent), 1000000000000000) AS INTEGER),
       CAST(MIN(TOTAL(CASE WHEN settled = 0 THEN reserved ELSE 0 END), 1000000000000000) AS INTEGER)
FROM cost_ledger WHERE user_id IS NOT NULL GROUP BY user_id, day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'user:' || user_id, month, CAST(MIN(TOTAL(spent), 1000000000000000) AS INTEGER),
       CAST(MIN(TOTAL(CASE WHEN settled = 0 THEN reserved ELSE 0 END), 1000000000000000) AS INTEGER)
FROM cost_ledger WHERE user_id IS NOT NULL GROUP BY user_id, month;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'key:' || key_id, day, CAST(MIN(TOTAL(spent), 1000000000000000) AS INTEGER),
       CAST(MIN(TOTAL(CASE WHEN settled = 0 THEN reserved ELSE 0 END), 1000000000000000) AS INTEGER)
FROM cost_ledger WHERE key_id IS NOT NULL GROUP BY key_id, day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'key:' || key_id, month, CAST(MIN(TOTAL(spent), 1000000000000000) AS INTEGER),
       CAST(MIN(TOTAL(CASE WHEN settled = 0 THEN reserved ELSE 0 END), 1000000000000000) AS INTEGER)
FROM cost_ledger WHERE key_id IS NOT NULL GROUP BY key_id, month;
