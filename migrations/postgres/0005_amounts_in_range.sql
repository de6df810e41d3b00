-- Amounts range-checked in the schema too (issue 14): every spent and reserved amount is in
-- 0..=MAX_MICROS (1000000000000000 micro-USD, one billion USD). Before this, a client's `max_tokens`
-- could overflow a reservation (`bigint out of range`, leaving a hold that blocked every paid
-- call). Existing rows are clamped into the range, the totals rebuilt from the ledger rows
-- (SUM over bigint is numeric here, so it cannot overflow), and CHECK constraints refuse any
-- later out-of-range write. The ledger's advisory lock (LEDGER_LOCK in postgres_guard.rs) keeps
-- instances still running the old version from writing totals while they are rebuilt.
SELECT pg_advisory_xact_lock(30787860818063969);
UPDATE cost_ledger
SET reserved = LEAST(GREATEST(reserved, 0), 1000000000000000), spent = LEAST(GREATEST(spent, 0), 1000000000000000)
WHERE reserved NOT BETWEEN 0 AND 1000000000000000 OR spent NOT BETWEEN 0 AND 1000000000000000;
ALTER TABLE cost_ledger ADD CONSTRAINT cost_ledger_amounts_in_range
    CHECK (reserved BETWEEN 0 AND 1000000000000000 AND spent BETWEEN 0 AND 1000000000000000);

DELETE FROM cost_totals;
ALTER TABLE cost_totals ADD CONSTRAINT cost_totals_amounts_in_range
    CHECK (reserved BETWEEN 0 AND 1000000000000000 AND spent BETWEEN 0 AND 1000000000000000);
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'global', day, CAST(LEAST(SUM(spent), 1000000000000000) AS BIGINT),
       CAST(LEAST(SUM(CASE WHEN settled = FALSE THEN reserved ELSE 0 END), 1000000000000000) AS BIGINT)
FROM cost_ledger GROUP BY day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'global', month, CAST(LEAST(SUM(spent), 1000000000000000) AS BIGINT),
       CAST(LEAST(SUM(CASE WHEN settled = FALSE THEN reserved ELSE 0 END), 1000000000000000) AS BIGINT)
FROM cost_ledger GROUP BY month;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'user:' || user_id, day, CAST(LEAST(SUM(spent), 1000000000000000) AS BIGINT),
       CAST(LEAST(SUM(CASE WHEN settled = FALSE THEN reserved ELSE 0 END), 1000000000000000) AS BIGINT)
FROM cost_ledger WHERE user_id IS NOT NULL GROUP BY user_id, day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'user:' || user_id, month, CAST(LEAST(SUM(spent), 1000000000000000) AS BIGINT),
       CAST(LEAST(SUM(CASE WHEN settled = FALSE THEN reserved ELSE 0 END), 1000000000000000) AS BIGINT)
FROM cost_ledger WHERE user_id IS NOT NULL GROUP BY user_id, month;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'key:' || key_id, day, CAST(LEAST(SUM(spent), 1000000000000000) AS BIGINT),
       CAST(LEAST(SUM(CASE WHEN settled = FALSE THEN reserved ELSE 0 END), 1000000000000000) AS BIGINT)
FROM cost_ledger WHERE key_id IS NOT NULL GROUP BY key_id, day;
INSERT INTO cost_totals (scope, period, spent, reserved)
SELECT 'key:' || key_id, month, CAST(LEAST(SUM(spent), 1000000000000000) AS BIGINT),
       CAST(LEAST(SUM(CASE WHEN settled = FALSE THEN reserved ELSE 0 END), 1000000000000000) AS BIGINT)
FROM cost_ledger WHERE key_id IS NOT NULL GROUP BY key_id, month;
