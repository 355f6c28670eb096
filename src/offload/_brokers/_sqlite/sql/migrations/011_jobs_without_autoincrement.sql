-- Migration 11: the jobs table rebuilt, without AUTOINCREMENT and with its
-- CHECK written as comparisons, for a cheaper enqueue.
--
-- AUTOINCREMENT kept seq from ever being reused by rewriting the table's row
-- of sqlite_sequence at every insert: one more page per commit (an enqueue
-- wrote four pages to the WAL, now three: the table, the id index and the
-- claim index), and a third of the CPU of an enqueue's INSERT, with the CHECK's
-- IN list (a temporary b-tree built at each insert, claim, ack and retry, as
-- migration 10 says).
--
-- A seq must still never be reused: a token (the claim in queries.sql) is the
-- job's seq and its claims so far, and a worker whose lease lapsed must find
-- its token matching nothing, even once its job is deleted and a new one has
-- been inserted. Without AUTOINCREMENT, SQLite gives a new row the table's
-- highest seq + 1, which reuses the seqs of the newest jobs once they are all
-- deleted. So jobs_seq keeps a floor: the trigger jobs_seq_floor raises it to
-- the seq of a job deleted while no job with a higher seq remained (the only
-- deletion that lets a seq come back; the jobs above a deleted one protect it
-- while they remain, and the floor covers it once they are gone), and the
-- insert (queries.sql) takes seq above both the floor and the highest seq.
-- Only the deletion of the newest job writes jobs_seq; an insert just reads it.
--
-- An offload older than this one, still running on the file, inserts without
-- the floor: restart every process of the file after upgrading.

CREATE TABLE jobs_seq (
    one INTEGER PRIMARY KEY CHECK (one = 0),  -- one row
    floor INTEGER NOT NULL CHECK (typeof(floor) = 'integer')  -- no new seq at or below it
);

-- The highest seq AUTOINCREMENT gave: none of them may come back.
INSERT INTO jobs_seq (one, floor)
VALUES (0, coalesce((SELECT max(seq) FROM sqlite_sequence WHERE name = 'jobs'), 0));

-- The same columns, in the same order (migration 1, then 2, 6 and 9).
CREATE TABLE jobs_rebuilt (
    seq INTEGER PRIMARY KEY,  -- age order; never reused (fencing): see jobs_seq
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state = 'queued' OR state = 'running' OR state = 'retrying'
        OR state = 'succeeded' OR state = 'failed' OR state = 'cancelled'),
    due REAL NOT NULL,  -- queued/retrying: claimable from; running: lease end
    eta REAL,
    attempt INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    max_deliveries INTEGER,
    key TEXT,
    timeout REAL,
    retries INTEGER,
    created REAL NOT NULL,
    payload BLOB,
    result_ttl REAL,
    meta TEXT,
    finished REAL,
    expires REAL,  -- when prune deletes it; NULL while live and for failed jobs
    result BLOB,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    error_args TEXT,
    holder TEXT,  -- the worker holding a running job (migration 6)
    cancel_requested REAL  -- when a cancel of a running job was asked (migration 9)
);

-- Every row as it is, a damaged one too (a state offload does not know,
-- written behind its back, reads as failed; the copy must not refuse it).
PRAGMA ignore_check_constraints = ON;

INSERT INTO jobs_rebuilt (seq, id, task, queue, priority, state, due, eta, attempt, token,
    max_deliveries, key, timeout, retries, created, payload, result_ttl, meta, finished,
    expires, result, error_type, error_message, error_traceback, error_args, holder,
    cancel_requested)
SELECT seq, id, task, queue, priority, state, due, eta, attempt, token,
    max_deliveries, key, timeout, retries, created, payload, result_ttl, meta, finished,
    expires, result, error_type, error_message, error_traceback, error_args, holder,
    cancel_requested
FROM jobs;

PRAGMA ignore_check_constraints = OFF;

-- Its indexes and triggers go with it.
DROP TABLE jobs;

ALTER TABLE jobs_rebuilt RENAME TO jobs;

-- The indexes as migration 10 (jobs_claim, jobs_settled) and 1 left them.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, due)
    WHERE state = 'queued' OR state = 'retrying' OR state = 'running';

CREATE INDEX jobs_lease ON jobs (due) WHERE state = 'running';

CREATE INDEX jobs_key ON jobs (key) WHERE key IS NOT NULL;

CREATE INDEX jobs_expires ON jobs (expires) WHERE expires IS NOT NULL;

CREATE INDEX jobs_settled ON jobs (queue, state)
    WHERE state = 'retrying' OR state = 'succeeded' OR state = 'failed' OR state = 'cancelled';

-- The triggers as migrations 3, 4, 10 and 7 left them.
CREATE TRIGGER progress_goes_with_its_job AFTER DELETE ON jobs
BEGIN
    DELETE FROM progress WHERE job_id = old.id;
END;

CREATE TRIGGER steps_go_with_their_job AFTER DELETE ON jobs
BEGIN
    DELETE FROM steps WHERE job_id = old.id;
END;

CREATE TRIGGER stats_finished AFTER UPDATE OF state ON jobs
WHEN (NEW.state = 'succeeded' OR NEW.state = 'failed')
    AND (OLD.state = 'queued' OR OLD.state = 'running' OR OLD.state = 'retrying')
BEGIN
    INSERT INTO stats (minute, queue, succeeded, failed)
    VALUES (
        CAST(coalesce(NEW.finished, strftime('%s', 'now')) / 60 AS INTEGER) * 60,
        NEW.queue, NEW.state = 'succeeded', NEW.state = 'failed'
    )
    ON CONFLICT (minute, queue) DO UPDATE SET
        succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed;
END;

CREATE TRIGGER stats_finished_deleted AFTER DELETE ON jobs
WHEN OLD.state = 'running'
BEGIN
    INSERT INTO stats (minute, queue, succeeded, failed)
    VALUES (CAST(strftime('%s', 'now') / 60 AS INTEGER) * 60, OLD.queue, 1, 0)
    ON CONFLICT (minute, queue) DO UPDATE SET succeeded = succeeded + 1;
END;

-- The newest job deleted (no higher seq remains): its seq becomes the floor.
-- An upsert, so that a missing row is made again rather than the floor lost.
CREATE TRIGGER jobs_seq_floor AFTER DELETE ON jobs
WHEN OLD.seq > coalesce((SELECT max(seq) FROM jobs), 0)
BEGIN
    INSERT INTO jobs_seq (one, floor) VALUES (0, OLD.seq)
    ON CONFLICT (one) DO UPDATE SET floor = max(floor, excluded.floor);
END;
