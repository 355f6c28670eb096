-- Migration 6: the worker registry: live workers, and
-- which worker holds each running job.
--
-- A claim writes its worker's id into holder (the claim's own UPDATE: no
-- write more per job); when that worker's heartbeat lapses, its running
-- jobs become claimable at once instead of at the end of their leases.

ALTER TABLE jobs ADD COLUMN holder TEXT;

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,  -- WorkerInfo as JSON (_brokers/_workers.py)
    started REAL NOT NULL,
    last_seen REAL NOT NULL,
    lapses REAL NOT NULL  -- last_seen + the worker's lapse: listed until then
);
