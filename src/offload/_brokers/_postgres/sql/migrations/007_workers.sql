-- Migration 7: the worker registry, and which
-- worker holds each running job.
--
-- A claim writes its worker's id into holder (in the claim's own UPDATE:
-- no write more per job); when that worker's heartbeat lapses, its running
-- jobs become claimable at once instead of at the end of their leases.
-- A nullable column without a default: adding it rewrites nothing.

ALTER TABLE {s}.jobs ADD COLUMN holder text;

CREATE TABLE {s}.workers (
    id text PRIMARY KEY,
    info text NOT NULL,  -- WorkerInfo as JSON (_brokers/_workers.py)
    started double precision NOT NULL,
    last_seen double precision NOT NULL,
    lapses double precision NOT NULL  -- last_seen + the worker's lapse: listed until then
);
