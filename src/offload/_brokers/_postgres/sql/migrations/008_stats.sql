-- Migration 8: finished jobs by their end time, for the dashboard's
-- throughput and failure-rate charts (the inspector's History).
--
-- The charts count succeeded and failed jobs per minute straight from the
-- jobs that finished in the last hour, through this index: no counter row
-- that every ack of every worker would have to lock. Each ack adds one
-- index entry; prune removes it with the job. A job pruned within the hour
-- (result_ttl under an hour) leaves the chart with it.

CREATE INDEX jobs_finished ON {s}.jobs (finished) WHERE state IN ('succeeded', 'failed');
