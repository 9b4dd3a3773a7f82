-- Baseline: no business tables yet.
-- The migration history itself lives in refinery_schema_history, created by refinery.
SELECT 1;
