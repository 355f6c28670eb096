-- Migration 1: jobs, the token sequence, and the indexes of the claim, lease,
-- key and prune queries.
--
-- Only ever appended to, never edited: released databases ran this text.
-- The schema appears as the placeholder s in braces, filled in with the
-- quoted schema name by schema.py (the one place that does it).
-- Live states are spelled as every query spells them: a partial index is
-- only used by a query whose WHERE clause implies its condition.

-- Fencing tokens: unique across the namespace's jobs (a worker keys what it
-- runs by token), never reused, not even after a job is deleted.
CREATE SEQUENCE {s}.tokens;

CREATE TABLE {s}.jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- age order
    id text NOT NULL,
    task text NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN
        ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
    due double precision NOT NULL,  -- queued/retrying: claimable from; running: lease end
    eta double precision,
    attempt integer NOT NULL DEFAULT 0,
    token bigint NOT NULL DEFAULT 0,
    max_deliveries integer,
    key text,
    timeout double precision,
    retries integer,
    created double precision NOT NULL,
    payload bytea,
    result_ttl double precision,
    meta text,
    finished double precision,
    expires double precision,  -- when prune deletes it; NULL while live and when failed
    result bytea,
    error_type text,
    error_message text,
    error_traceback text,
    CONSTRAINT jobs_id UNIQUE (id)
);

-- The claim over all queues: highest priority, then earliest due, then age.
CREATE INDEX jobs_ready ON {s}.jobs (priority DESC, due, seq)
    WHERE state IN ('queued', 'retrying', 'running');

-- The claim of named queues, one queue at a time in the worker's order.
CREATE INDEX jobs_queue ON {s}.jobs (queue, priority DESC, due, seq)
    WHERE state IN ('queued', 'retrying', 'running');

-- Lapsed leases, for the dead-letter sweep of every claim: running jobs only.
CREATE INDEX jobs_lease ON {s}.jobs (due) WHERE state = 'running';

-- Key lookups (the live holder, or a success within the reuse window).
CREATE INDEX jobs_key ON {s}.jobs (key) WHERE key IS NOT NULL;

-- A safety net under the advisory key lock: one live job per key, whatever
-- a caller's isolation level hides from the check.
CREATE UNIQUE INDEX jobs_live_key ON {s}.jobs (key)
    WHERE key IS NOT NULL AND state IN ('queued', 'retrying', 'running');

CREATE INDEX jobs_expires ON {s}.jobs (expires) WHERE expires IS NOT NULL;
