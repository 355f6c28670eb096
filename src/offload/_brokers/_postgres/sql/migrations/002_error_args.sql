-- Migration 2: the exception's args (ErrorInfo.args), and the index of the
-- sweep that makes a live job whose due time is no time (NaN, infinite,
-- after the year 3000: written by something else than offload) claimable
-- again.
--
-- The bound is a literal, never a constant of the code: a migration's text
-- is fixed once released. PostgreSQL sorts NaN above every number, so the
-- condition holds for NaN too; the unstick query spells it the same way.

ALTER TABLE {s}.jobs ADD COLUMN error_args text;

CREATE INDEX jobs_untimely ON {s}.jobs (seq)
    WHERE state IN ('queued', 'retrying', 'running') AND due >= 32503680000::float8;
