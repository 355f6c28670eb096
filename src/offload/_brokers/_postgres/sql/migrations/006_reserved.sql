-- Placeholder on branch wt-dashboard: migration 006 belongs to another branch
-- (migrations must be numbered without a gap). Delete this file when merging
-- that branch's own 006_*.sql.
SELECT 1;
