-- The tokens a settled call used, beside its charge (issue 25): the privacy center's spend
-- shows requests and tokens next to dollars, per day, model, user and API key. Rows settled
-- before this migration, imported days and calls whose usage was never known hold 0.
ALTER TABLE cost_ledger ADD COLUMN IF NOT EXISTS tokens_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cost_ledger ADD COLUMN IF NOT EXISTS tokens_out BIGINT NOT NULL DEFAULT 0;
