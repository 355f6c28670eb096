-- Placeholder on branch wt-dashboard: migration 004 belongs to another branch
-- (migrations must be numbered without a gap). Delete this file when merging
-- that branch's own 004_*.sql.
SELECT 1;
