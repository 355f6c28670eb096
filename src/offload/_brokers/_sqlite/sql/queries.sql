-- The SQLite broker's statements, each under the name Python calls it by.
--
-- Comment lines are dropped when the file is loaded (schema.QUERIES): a
-- statement's own comments go right under its name. Braces are filled in by
-- Python, never with a value (values are always bound, ? or ?N):
-- {message_columns} and {info_columns}, the column lists of _sql_rows, at
-- load; {seqs}, {marks}, {queue} and {parts}, lists of ? or a cast of one,
-- at each call.
--
-- The live states are spelled exactly as in the partial index jobs_claim
-- (migrations/010_states_as_comparisons.sql) wherever they appear: SQLite
-- uses a partial index only for a query whose WHERE clause repeats its
-- condition. Three states or more are compared one by one, joined by OR,
-- never listed with IN: SQLite builds a temporary b-tree for such a list
-- each time a statement runs (the migration says more).


-- name: schema_version
SELECT value FROM offload_meta WHERE name = 'schema_version'

-- name: create_meta
CREATE TABLE IF NOT EXISTS offload_meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID

-- name: set_schema_version
INSERT OR REPLACE INTO offload_meta (name, value) VALUES ('schema_version', ?)

-- name: data_version
-- Changes when another connection commits to the file: read from the WAL
-- index in shared memory, no disk access.
PRAGMA data_version


-- name: insert
-- The values in the order of message_row (_sql_rows), which builds the rows.
-- seq: above the highest one and above the floor of deleted ones, never a
-- seq used before (migrations/011_jobs_without_autoincrement.sql). Without
-- the floor's row, NULL: SQLite's own choice, the highest + 1.
INSERT INTO jobs (seq, id, task, queue, priority, state, due, eta, attempt, max_deliveries,
    key, timeout, retries, created, payload, result_ttl, meta)
VALUES ((SELECT max(floor, coalesce((SELECT max(seq) FROM jobs), 0)) FROM jobs_seq) + 1,
    ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: job_with_key
-- The live job with a key, else one that succeeded after the reuse window
-- began, else (a key with a horizon) one that finished in any state after
-- the horizon began (+inf without one).
SELECT id FROM jobs WHERE key = ?
    AND ((state = 'queued' OR state = 'retrying' OR state = 'running')
    OR (state = 'succeeded' AND finished > ?)
    OR ((state = 'succeeded' OR state = 'failed' OR state = 'cancelled') AND finished > ?))
ORDER BY state = 'succeeded', seq DESC LIMIT 1

-- name: queue_names
-- Queues with live jobs: one index seek per queue (a skip scan).
WITH RECURSIVE q(name) AS (
    SELECT (SELECT min(queue) FROM jobs WHERE (state = 'queued' OR state = 'retrying' OR state = 'running'))
    UNION ALL
    SELECT (SELECT min(queue) FROM jobs
            WHERE (state = 'queued' OR state = 'retrying' OR state = 'running') AND queue > q.name)
    FROM q WHERE q.name IS NOT NULL
)
SELECT name FROM q WHERE name IS NOT NULL

-- name: candidates_in_queue
-- One queue's best ready jobs: rank, queue, now, limit. A due that is not a
-- number (text sorts after every number) would never come: such a job is
-- claimable at once, and the claim sets its due.
SELECT * FROM (
    SELECT seq, ? AS rank, priority, due FROM jobs
    WHERE queue = {queue} AND (state = 'queued' OR state = 'retrying' OR state = 'running')
        AND (due <= ? OR due >= '')
    ORDER BY priority DESC, due, seq LIMIT ?
)

-- name: candidates
-- Only seq is read back: the other columns may hold anything.
SELECT seq FROM ({parts})

-- name: candidates_in_order
SELECT seq FROM ({parts}) ORDER BY rank, priority DESC, due, seq LIMIT ?

-- name: claim
-- The token fences a claim. Low 40 bits: the job's seq (so tokens are unique
-- across jobs); above: the job's claims so far (statements.SEQ_BITS).
-- holder: the registered worker claiming (NULL: none; see workers_release).
UPDATE jobs SET state = 'running', attempt = attempt + 1, due = ?, holder = ?,
    token = (((token >> 40) + 1) << 40) | seq
WHERE seq IN ({seqs})
RETURNING seq, token, {message_columns}

-- name: claimed
SELECT seq, token, {message_columns} FROM jobs WHERE seq IN ({seqs})

-- name: lapsed
-- Lapsed jobs delivered max_deliveries times (else the default): dead-lettered.
SELECT seq, attempt FROM jobs WHERE state = 'running' AND due <= ?
    AND attempt >= coalesce(max_deliveries, ?)

-- name: dead_letter
UPDATE jobs SET state = 'failed', finished = ?, expires = NULL, error_type = ?,
    error_message = ?, error_traceback = ?, error_args = ?
WHERE seq = ?

-- name: ack
-- Fenced, as every write of a claimed job: by seq (the rowid, read from the
-- token: the fastest lookup, and it finds a job whose stored id is corrupt),
-- by the token itself, and only while running.
UPDATE jobs SET state = ?, finished = ?, expires = ?, result = ?,
    error_type = ?, error_message = ?, error_traceback = ?, error_args = ?
WHERE seq = ? AND token = ? AND state = 'running'

-- name: ack_delete
-- A zero TTL keeps nothing.
DELETE FROM jobs WHERE seq = ? AND token = ? AND state = 'running'

-- name: nack
-- Without an error, the last one (if any) stays.
UPDATE jobs SET state = ?, due = ?, eta = coalesce(?, eta), attempt = attempt - ?
WHERE seq = ? AND token = ? AND state = 'running'

-- name: nack_error
UPDATE jobs SET state = ?, due = ?, eta = coalesce(?, eta), attempt = attempt - ?,
    error_type = ?, error_message = ?, error_traceback = ?, error_args = ?
WHERE seq = ? AND token = ? AND state = 'running'

-- name: extend
-- No row: the lease is lost; a row: held, and whether a cancel was asked.
UPDATE jobs SET due = ? WHERE seq = ? AND token = ? AND state = 'running'
RETURNING cancel_requested IS NOT NULL

-- name: next_due
SELECT min(due) FROM jobs WHERE (state = 'queued' OR state = 'retrying' OR state = 'running')

-- name: next_due_in
SELECT min(due) FROM jobs WHERE (state = 'queued' OR state = 'retrying' OR state = 'running')
    AND queue IN ({marks})

-- name: prune_some
-- At most a batch: a claim or an ack must not hold the write lock for long.
DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE expires <= ? LIMIT ?)


-- name: job
SELECT {info_columns} FROM jobs WHERE id = ?

-- name: job_states
SELECT id, state FROM jobs WHERE id IN ({marks})

-- name: counts
-- Each part through a partial index whose condition it repeats word for
-- word, never the table: live jobs per queue (jobs_claim), running ones
-- (jobs_lease), the others by state (jobs_settled); queued is what is left
-- of live. (jobs_lease named: `state = 'running'` implies jobs_claim's
-- condition too, and SQLite would pick that one, reading every live job.)
-- Then the number of all jobs (the id index). One statement: one
-- snapshot. More jobs than the parts found means rows in a state offload
-- does not know (a damaged file): only then is the table scanned for them.
SELECT queue, 'live', count(*) FROM jobs
WHERE (state = 'queued' OR state = 'retrying' OR state = 'running') GROUP BY queue
UNION ALL
SELECT queue, state, count(*) FROM jobs INDEXED BY jobs_lease WHERE state = 'running'
GROUP BY queue
UNION ALL
SELECT queue, state, count(*) FROM jobs
WHERE (state = 'retrying' OR state = 'succeeded' OR state = 'failed'
    OR state = 'cancelled') GROUP BY queue, state
UNION ALL
SELECT NULL, 'all', count(*) FROM jobs

-- name: counts_unknown
SELECT queue, state, count(*) FROM jobs
WHERE state NOT IN ('queued', 'retrying', 'running', 'succeeded', 'failed', 'cancelled')
GROUP BY queue, state

-- name: jobs
-- Newest first: seq is the order of insertion.
SELECT {info_columns} FROM jobs
WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2)
ORDER BY seq DESC LIMIT ?3

-- name: cancel_deleting
-- A zero TTL keeps nothing, as for an ack: job id, the broker's result TTL.
DELETE FROM jobs WHERE id = ?1 AND state IN ('queued', 'retrying')
    AND coalesce(result_ttl, ?2) <= 0

-- name: cancel
UPDATE jobs SET state = 'cancelled', finished = ?3, expires = ?3 + coalesce(result_ttl, ?2)
WHERE id = ?1 AND state IN ('queued', 'retrying')

-- name: cancel_running
-- Asked, not done: the worker hears it at its next lease renewal (extend).
UPDATE jobs SET cancel_requested = ?2 WHERE id = ?1 AND state = 'running'

-- name: retry_check
-- The key is compared in SQL, never read: a stored one may not even be text.
SELECT state, EXISTS (
    SELECT 1 FROM jobs AS other WHERE other.key = jobs.key
        AND (other.state = 'queued' OR other.state = 'retrying'
            OR other.state = 'running')
) FROM jobs WHERE id = ?

-- name: retry
UPDATE jobs SET state = 'queued', attempt = 0, due = ?, eta = NULL, finished = NULL,
    expires = NULL, result = NULL, error_type = NULL, error_message = NULL,
    error_traceback = NULL, error_args = NULL, cancel_requested = NULL
WHERE id = ?

-- name: purge
DELETE FROM jobs WHERE state = ?1 AND (?2 IS NULL OR queue = ?2)

-- name: prune
DELETE FROM jobs WHERE expires <= ?

-- name: record_progress
-- Only while the delivery's lease holds (seq, token): a worker that lost it
-- does not overwrite what the job's next holder reports.
INSERT INTO progress (job_id, done, total, note, at)
    SELECT id, ?, ?, ?, ? FROM jobs WHERE seq = ? AND token = ? AND state = 'running'
    ON CONFLICT (job_id) DO UPDATE SET
        done = excluded.done, total = excluded.total, note = excluded.note, at = excluded.at

-- name: progress
SELECT done, total, note, at FROM progress WHERE job_id = ?

-- name: record_step
-- Only while the delivery's lease holds (seq, token). A step recorded once
-- keeps its first result: a run that raced past it does not overwrite it.
INSERT INTO steps (job_id, name, result)
    SELECT id, ?, ? FROM jobs WHERE seq = ? AND token = ? AND state = 'running'
    ON CONFLICT (job_id, name) DO NOTHING

-- name: step_held
SELECT 1 FROM jobs WHERE seq = ? AND token = ? AND state = 'running'

-- name: step_result
SELECT result FROM steps WHERE job_id = ? AND name = ?

-- name: last_fired
SELECT fire, job_id FROM schedules WHERE name = ?

-- name: first_fired
-- Compare-and-set from "no record yet": a row already there wins.
INSERT OR IGNORE INTO schedules (name, fire, job_id) VALUES (?, ?, ?)

-- name: next_fired
-- Compare-and-set: only from the fire time the caller read.
UPDATE schedules SET fire = ?, job_id = ? WHERE name = ? AND fire = ?

-- name: worker_beat
-- Register or refresh a worker: id, info, started, last seen, lapses.
INSERT INTO workers (id, info, started, last_seen, lapses) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen,
    lapses = excluded.lapses

-- name: workers_release
-- The running jobs of workers whose heartbeat lapsed: claimable now (their
-- lease ends now; the claim's lapsed-lease path takes them, max_deliveries
-- counted as for any lapse).
UPDATE jobs SET due = ?1
WHERE state = 'running' AND due > ?1
    AND holder IN (SELECT id FROM workers WHERE lapses <= ?1)

-- name: workers_forget
DELETE FROM workers WHERE lapses <= ?

-- name: workers_next_lapse
SELECT min(lapses) FROM workers WHERE id <> ?

-- name: worker_leave
DELETE FROM workers WHERE id = ?

-- name: workers_live
SELECT id, info FROM workers WHERE lapses > ? ORDER BY started, id
-- name: search_jobs
-- A page of jobs, newest first, older than the cursor (seq < ?4): the primary
-- key is walked backwards from there, never skipped over with OFFSET. Text
-- matches the start of a task name.
SELECT {info_columns}, seq FROM jobs
WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2)
    AND (?3 IS NULL OR substr(task, 1, length(?3)) = ?3)
    AND seq < ?4
ORDER BY seq DESC LIMIT ?5

-- name: search_jobs_by_id
SELECT {info_columns}, seq FROM jobs
WHERE id = ?3 AND (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2) AND seq < ?4
ORDER BY seq DESC LIMIT ?5

-- name: search_jobs_by_key
SELECT {info_columns}, seq FROM jobs
WHERE key = ?3 AND (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2) AND seq < ?4
ORDER BY seq DESC LIMIT ?5

-- name: oldest_ready
-- Claimable: queued or retrying and due, or running with a lapsed lease (its
-- due is the lease's end). The live states spelled as the claim index has
-- them, so that it is read alone (a partial index is used only when the
-- query repeats its condition).
SELECT queue, min(due) FROM jobs
WHERE (state = 'queued' OR state = 'retrying' OR state = 'running') AND due <= ?
GROUP BY queue

-- name: throughput
SELECT minute, queue, succeeded, failed FROM stats WHERE minute >= ? ORDER BY minute, queue

-- name: limit_take_token
-- The whole of a call that goes, in one statement: a row made for a new
-- limit, or pushed one interval on when a token is there. No row back: refused.
-- Parameters: name, now, interval, burst.
INSERT INTO limits AS l (name, tat) VALUES (?1, ?2 + ?3)
ON CONFLICT (name) DO UPDATE SET tat = max(l.tat, ?2) + ?3
WHERE l.tat - ?4 * ?3 <= ?2
RETURNING tat

-- name: limit_row
SELECT tat, turn, hold FROM limits WHERE name = ?

-- name: limit_save
INSERT INTO limits (name, tat, turn, hold) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET tat = excluded.tat, turn = excluded.turn, hold = excluded.hold

-- name: limit_holders
-- Each holder of a limit's slots, and whether its job still runs under a live lease.
SELECT s.holder, s.since, coalesce(j.state = 'running' AND j.due > ?, 0)
FROM limit_slots s LEFT JOIN jobs j ON j.id = s.holder
WHERE s.name = ?

-- name: limit_slot_drop
DELETE FROM limit_slots WHERE name = ? AND holder = ?

-- name: limit_slot_add
INSERT OR IGNORE INTO limit_slots (name, holder, since) VALUES (?, ?, ?)

-- name: limit_slot_release
DELETE FROM limit_slots WHERE name = ? AND holder = ? RETURNING since
