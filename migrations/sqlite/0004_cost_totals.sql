-- Running totals per scope ('global', 'user:<id>', 'key:<id>') and period ('YYYY-MM-DD' or
-- 'YYYY-MM'), kept in the same transaction as the ledger rows: a limit check reads one row
-- instead of summing the day's ledger, so its cost does not grow with the traffic.
CREATE TABLE IF NOT EXISTS cost_totals (
    scope    TEXT NOT NULL,
    period   TEXT NOT NULL,
    spent    BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, period)
);
CREATE INDEX IF NOT EXISTS cost_ledger_open ON cost_ledger (settled, created_at);

INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'global', day, SUM(spent), SUM(CASE WHEN settled = 0 THEN reserved ELSE 0 END)
FROM cost_ledger GROUP BY day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'global', month, SUM(spent), SUM(CASE WHEN settled = 0 THEN reserved ELSE 0 END)
FROM cost_ledger GROUP BY month;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'user:' || user_id, day, SUM(spent), SUM(CASE WHEN settled = 0 THEN reserved ELSE 0 END)
FROM cost_ledger WHERE user_id IS NOT NULL GROUP BY user_id, day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'user:' || user_id, month, SUM(spent), SUM(CASE WHEN settled = 0 THEN reserved ELSE 0 END)
FROM cost_ledger WHERE user_id IS NOT NULL GROUP BY user_id, month;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'key:' || key_id, day, SUM(spent), SUM(CASE WHEN settled = 0 THEN reserved ELSE 0 END)
FROM cost_ledger WHERE key_id IS NOT NULL GROUP BY key_id, day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'key:' || key_id, month, SUM(spent), SUM(CASE WHEN settled = 0 THEN reserved ELSE 0 END)
FROM cost_ledger WHERE key_id IS NOT NULL GROUP BY key_id, month;
