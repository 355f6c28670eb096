-- The PostgreSQL broker's statements, each under its name (broker.py,
-- inspector.py and schema.py look them up by it).
--
-- Placeholders in braces are filled in once per broker by queries.fill, the
-- only place that does it: s is the quoted schema name (a validated
-- identifier), max_deliveries and max_count offload's constants,
-- message_columns and info_columns the columns _sql_rows reads, in its order,
-- tell the fragment of that name below, and cap (the claims only) a power of
-- two, one text per cap (queries.render). Everything else a statement
-- needs is a bound parameter.
--
-- Time is never now() here: every instant is a parameter from the broker's
-- injected clock, so tests drive leases and ETAs with a fake one.
-- Live states are spelled one way everywhere, the way the partial indexes
-- of the migrations spell them: an index is only used by a query whose
-- WHERE clause implies its condition.

-- name: insert_one
-- One statement, one round trip: the row and the wake-up commit together (a
-- NOTIFY is delivered only if its transaction commits). Columns in the order
-- of _sql_rows.message_row, which builds the rows; then reply_to, the
-- producer's reply channel while it listens (feed.py), else NULL.
WITH ins AS (INSERT INTO {s}.jobs (id, task, queue, priority, due, eta, attempt,
    max_deliveries, key, timeout, retries, created, payload, result_ttl, meta, reply_to,
    state)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'queued'))
SELECT pg_notify(%s, %s)

-- name: insert_many
-- One notification per queue per transaction: PostgreSQL folds identical
-- ones. The array types are queries.COPY_TYPES, in the same order; then the
-- batch's reply channel (one producer's, or NULL).
WITH ins AS (INSERT INTO {s}.jobs (id, task, queue, priority, due, eta, attempt,
    max_deliveries, key, timeout, retries, created, payload, result_ttl, meta, reply_to,
    state)
    SELECT *, %s::text, 'queued' FROM unnest(%s::text[], %s::text[], %s::text[], %s::int4[],
        %s::float8[], %s::float8[], %s::int4[], %s::int4[], %s::text[], %s::float8[],
        %s::int4[], %s::float8[], %s::bytea[], %s::float8[], %s::text[]))
SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q

-- name: copy
-- A large batch: psycopg formats binary COPY rows in C, arrays in Python.
-- Each row ends with the batch's reply channel (one producer's, or NULL).
COPY {s}.jobs (id, task, queue, priority, due, eta, attempt, max_deliveries, key, timeout,
    retries, created, payload, result_ttl, meta, reply_to) FROM STDIN (FORMAT BINARY)

-- name: notify
SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q

-- name: lock_keys
-- Advisory locks held until the transaction ends, taken in one order.
SELECT pg_advisory_xact_lock(x) FROM unnest(%s::int8[]) AS x

-- name: holders
-- Per key, the job that holds it: a live one, else a success within the
-- reuse window.
SELECT DISTINCT ON (key) key, id FROM {s}.jobs WHERE key = ANY(%s)
    AND (state IN ('queued', 'retrying', 'running') OR (state = 'succeeded' AND finished > %s))
    ORDER BY key, state = 'succeeded', seq DESC

-- name: final_holders
-- Per key with a horizon, the newest job that finished in any state since it began.
SELECT DISTINCT ON (key) key, id FROM {s}.jobs WHERE key = ANY(%s)
    AND state IN ('succeeded', 'failed', 'cancelled') AND finished > %s
    ORDER BY key, seq DESC

-- name: ids_stored
SELECT count(*) FROM {s}.jobs WHERE id = ANY(%s)

-- name: claim
-- A lapsed job that was delivered max_deliveries times (none stored: the
-- default, not forever) is dead-lettered in the same statement as the claim,
-- which skips it; the mark parameter in its error text becomes the count.
-- least(): a stored attempt at the integer's limit must not make the
-- statement (every worker's claim) fail; past max_count the delivery is a
-- defect, dead-lettered by the runner.
-- One plan for every call: the server plans a prepared statement once (a
-- generic plan) only while that plan is estimated no dearer than the plans
-- made for each call's values, and else plans every call anew: with a
-- million jobs queued that took longer than the claim itself, and a limit
-- left a parameter (estimated as a tenth of the rows) made the generic plan
-- look dear. So no estimate here depends on a value: the instant is read
-- through a sub-select (an InitPlan: estimated alike in both plans), and
-- the limit is a constant of the text, cap (the next power of two: one text
-- per cap, queries.claim_statement), cut to the call's own limit outside
-- the subquery that locks, which locks only the rows read from it.
-- claim_queue is this statement with one more condition: keep them in step.
WITH dead AS (
    UPDATE {s}.jobs SET state = 'failed', finished = %(now)s, expires = NULL,
        error_type = %(etype)s, error_message = replace(%(emsg)s, %(mark)s, attempt::text),
        error_traceback = %(etb)s, error_args = NULL
    WHERE state = 'running' AND attempt >= coalesce(max_deliveries, {max_deliveries})
        AND due <= (SELECT %(now)s::float8)
), picked AS (
    SELECT seq, due FROM (
        SELECT seq, due FROM {s}.jobs
        WHERE state IN ('queued', 'retrying', 'running') AND due <= (SELECT %(now)s::float8)
            AND NOT (state = 'running' AND attempt >= coalesce(max_deliveries, {max_deliveries}))
        ORDER BY priority DESC, due, seq LIMIT {cap} FOR UPDATE SKIP LOCKED
    ) AS c LIMIT %(limit)s
)
UPDATE {s}.jobs AS j SET state = 'running', attempt = least(j.attempt, {max_count}) + 1,
    due = %(until)s, token = nextval('{s}.tokens'), holder = %(holder)s
FROM picked WHERE j.seq = picked.seq
RETURNING j.seq, picked.due, j.token, {message_columns}

-- name: claim_queue
-- The claim of one queue (jobs_queue index): claim, and queue = the queue
-- (a sub-select too: one estimate for every queue).
WITH dead AS (
    UPDATE {s}.jobs SET state = 'failed', finished = %(now)s, expires = NULL,
        error_type = %(etype)s, error_message = replace(%(emsg)s, %(mark)s, attempt::text),
        error_traceback = %(etb)s, error_args = NULL
    WHERE state = 'running' AND attempt >= coalesce(max_deliveries, {max_deliveries})
        AND due <= (SELECT %(now)s::float8)
), picked AS (
    SELECT seq, due FROM (
        SELECT seq, due FROM {s}.jobs
        WHERE state IN ('queued', 'retrying', 'running') AND due <= (SELECT %(now)s::float8)
            AND queue = (SELECT %(queue)s::text)
            AND NOT (state = 'running' AND attempt >= coalesce(max_deliveries, {max_deliveries}))
        ORDER BY priority DESC, due, seq LIMIT {cap} FOR UPDATE SKIP LOCKED
    ) AS c LIMIT %(limit)s
)
UPDATE {s}.jobs AS j SET state = 'running', attempt = least(j.attempt, {max_count}) + 1,
    due = %(until)s, token = nextval('{s}.tokens'), holder = %(holder)s
FROM picked WHERE j.seq = picked.seq
RETURNING j.seq, picked.due, j.token, {message_columns}

-- name: tell
-- Not a statement: the ack statements' last column (queries.fill puts it
-- where they say tell, in braces), over rows of the acked jobs with id,
-- reply_to and the outcome in the columns of the jobs table (state, result,
-- error_type, error_message, error_traceback, error_args). A job
-- whose producer listens sends it the outcome, in the ack's own statement:
-- the news is delivered once the ack commits, and never if it does not. As
-- JSON (feed.finished reads it), the result in base64; only the id when
-- that would not fit in a notification (less than 8000 bytes): the
-- producer then reads the job. A reply_to that cannot name a channel (1 to
-- 63 bytes; written by something else than offload) is ignored: pg_notify
-- would fail the ack, and every ack stored with it.
CASE WHEN octet_length(reply_to) BETWEEN 1 AND 63 THEN (
    SELECT pg_notify(reply_to,
        CASE WHEN octet_length(news) < 8000 THEN news ELSE json_build_array(id)::text END)
    FROM (SELECT json_build_array(id, state, encode(result, 'base64'), error_type,
        error_message, error_traceback, error_args)::text) AS f(news)
) END

-- name: ack
-- Fenced: only the current claim (its token, still running) records an outcome.
UPDATE {s}.jobs SET state = %(state)s, finished = %(now)s, expires = %(expires)s,
    result = %(result)s, error_type = %(etype)s, error_message = %(emsg)s,
    error_traceback = %(etb)s, error_args = %(eargs)s
WHERE id = %(id)s AND token = %(token)s AND state = 'running' RETURNING id, token, {tell}

-- name: ack_delete
-- The outcome the row no longer holds comes from the parameters.
WITH d AS (
    DELETE FROM {s}.jobs WHERE id = %(id)s AND token = %(token)s AND state = 'running'
    RETURNING id, token, reply_to, %(state)s::text AS state, %(result)s::bytea AS result,
        %(etype)s::text AS error_type, %(emsg)s::text AS error_message,
        %(etb)s::text AS error_traceback, %(eargs)s::text AS error_args
)
SELECT id, token, {tell} FROM d

-- name: ack_many
-- Acks of many threads in one statement: deleted where drop (a zero result
-- TTL), else updated; each fenced like ack. The arrays are read through
-- sub-selects, so that the server estimates their length alike in the plan
-- it makes once and in the plans for each call's values: else the length it
-- sees in a call's values makes those look cheaper, and it plans every
-- batch anew (see the claim's note).
WITH v AS (
    SELECT * FROM unnest((SELECT %s::text[]), (SELECT %s::int8[]), (SELECT %s::text[]),
        (SELECT %s::float8[]), (SELECT %s::float8[]), (SELECT %s::bytea[]),
        (SELECT %s::text[]), (SELECT %s::text[]), (SELECT %s::text[]), (SELECT %s::text[]),
        (SELECT %s::bool[]))
        AS v(id, token, state, finished, expires, result, etype, emsg, etb, eargs, drop)
), d AS (
    DELETE FROM {s}.jobs AS j USING v WHERE v.drop AND j.id = v.id
        AND j.token = v.token AND j.state = 'running'
    RETURNING j.id, j.token, j.reply_to, v.state, v.result, v.etype AS error_type,
        v.emsg AS error_message, v.etb AS error_traceback, v.eargs AS error_args
), u AS (
    UPDATE {s}.jobs AS j SET state = v.state, finished = v.finished, expires = v.expires,
        result = v.result, error_type = v.etype, error_message = v.emsg,
        error_traceback = v.etb, error_args = v.eargs
    FROM v WHERE NOT v.drop AND j.id = v.id AND j.token = v.token AND j.state = 'running'
    RETURNING j.id, j.token, j.reply_to, j.state, j.result, j.error_type, j.error_message,
        j.error_traceback, j.error_args
)
SELECT id, token, {tell} FROM (SELECT * FROM d UNION ALL SELECT * FROM u) AS acked

-- name: nack
-- Without an error (keep), the last one, if any, stays. The wake-up commits
-- with the row.
WITH u AS (
    UPDATE {s}.jobs SET state = %(state)s, due = %(due)s, eta = coalesce(%(eta)s, eta),
        attempt = attempt - %(back)s,
        error_type = CASE WHEN %(keep)s THEN error_type ELSE %(etype)s END,
        error_message = CASE WHEN %(keep)s THEN error_message ELSE %(emsg)s END,
        error_traceback = CASE WHEN %(keep)s THEN error_traceback ELSE %(etb)s END,
        error_args = CASE WHEN %(keep)s THEN error_args ELSE %(eargs)s END
    WHERE id = %(id)s AND token = %(token)s AND state = 'running' RETURNING queue
)
SELECT pg_notify(%(channel)s, queue) FROM u

-- name: extend
-- No row: the lease is lost; a row: held, and whether a cancel was asked.
UPDATE {s}.jobs SET due = %(until)s
WHERE id = %(id)s AND token = %(token)s AND state = 'running'
RETURNING cancel_requested IS NOT NULL

-- name: next_due
-- The earliest due time of a live job: the least of each priority's first
-- entry in the claim's index (jobs_ready), found by one descent per
-- priority (a loose index scan, written as a recursive query), never by
-- reading every live job: an idle worker asks before each wait, and a
-- million jobs due tomorrow made that a scan of a million rows.
WITH RECURSIVE p AS (
    (SELECT priority, due FROM {s}.jobs WHERE state IN ('queued', 'retrying', 'running')
        ORDER BY priority DESC, due, seq LIMIT 1)
    UNION ALL
    SELECT n.priority, n.due FROM p CROSS JOIN LATERAL (
        SELECT priority, due FROM {s}.jobs
        WHERE state IN ('queued', 'retrying', 'running') AND priority < p.priority
        ORDER BY priority DESC, due, seq LIMIT 1
    ) AS n
)
SELECT min(due) FROM p

-- name: next_due_in
-- next_due for each queue of a list (jobs_queue), the least of them.
SELECT min(first.due) FROM unnest(%s::text[]) AS q(name) CROSS JOIN LATERAL (
    WITH RECURSIVE p AS (
        (SELECT priority, due FROM {s}.jobs
            WHERE state IN ('queued', 'retrying', 'running') AND queue = q.name
            ORDER BY priority DESC, due, seq LIMIT 1)
        UNION ALL
        SELECT n.priority, n.due FROM p CROSS JOIN LATERAL (
            SELECT priority, due FROM {s}.jobs
            WHERE state IN ('queued', 'retrying', 'running') AND queue = q.name
                AND priority < p.priority
            ORDER BY priority DESC, due, seq LIMIT 1
        ) AS n
    )
    SELECT min(due) AS due FROM p
) AS first

-- name: unstick
-- A live job whose due time is no time would wait (or hold its lease)
-- forever: due now instead. Claimed, it runs, or is dead-lettered if its eta
-- is as broken (read_delivery says why). Uses jobs_untimely (empty), whose
-- condition migration 2 spells the same way.
UPDATE {s}.jobs SET due = %s
WHERE state IN ('queued', 'retrying', 'running') AND due >= 32503680000::float8

-- name: prune_some
-- Opportunistic pruning: a bounded batch, skipping rows others hold. Both
-- halves read an index whatever the table holds: the batch in order of
-- expiry (jobs_expires), the rows by key (an array, jobs_pkey). With a limit
-- and no order, the server took a third of the rows for expired, expected
-- to find a batch early in the table, and read the whole of it to find
-- none (a million queued jobs: 20,000 pages, each worker's first claim);
-- and a batch joined as a set made it scan the table to join them.
DELETE FROM {s}.jobs WHERE seq = ANY(ARRAY(
    SELECT seq FROM {s}.jobs WHERE expires <= %s ORDER BY expires LIMIT %s
    FOR UPDATE SKIP LOCKED
))

-- name: job
SELECT {info_columns} FROM {s}.jobs WHERE id = %s

-- name: states
SELECT id, state FROM {s}.jobs WHERE id = ANY(%s)

-- name: counts
SELECT queue, state, count(*) FROM {s}.jobs GROUP BY queue, state

-- name: jobs
SELECT {info_columns} FROM {s}.jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
    AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY seq DESC LIMIT %(limit)s

-- name: cancel
-- A zero result TTL keeps nothing: the job is deleted, not marked cancelled.
WITH d AS (
    DELETE FROM {s}.jobs WHERE id = %(id)s AND state IN ('queued', 'retrying')
        AND coalesce(result_ttl, %(ttl)s) <= 0 RETURNING 1
), u AS (
    UPDATE {s}.jobs SET state = 'cancelled', finished = %(now)s,
        expires = %(now)s + coalesce(result_ttl, %(ttl)s)
    WHERE id = %(id)s AND state IN ('queued', 'retrying')
        AND coalesce(result_ttl, %(ttl)s) > 0 RETURNING 1
)
SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM u)

-- name: cancel_running
-- Asked, not done: the worker hears it at its next lease renewal (extend).
UPDATE {s}.jobs SET cancel_requested = %(now)s WHERE id = %(id)s AND state = 'running'

-- name: retry_find
SELECT key, state FROM {s}.jobs WHERE id = %s FOR UPDATE

-- name: key_held
SELECT 1 FROM {s}.jobs WHERE key = %s AND state IN ('queued', 'retrying', 'running')

-- name: retry
-- The producer that enqueued the job heard of its end: nobody waits for the
-- new run on its reply channel (reply_to).
WITH u AS (
    UPDATE {s}.jobs SET state = 'queued', attempt = 0, due = %(now)s, eta = NULL,
        finished = NULL, expires = NULL, result = NULL, error_type = NULL,
        error_message = NULL, error_traceback = NULL, error_args = NULL, reply_to = NULL,
        cancel_requested = NULL
    WHERE id = %(id)s RETURNING queue
)
SELECT pg_notify(%(channel)s, queue) FROM u

-- name: purge
DELETE FROM {s}.jobs WHERE state = %(state)s AND (%(queue)s::text IS NULL OR queue = %(queue)s)

-- name: prune
DELETE FROM {s}.jobs WHERE expires <= %s

-- name: migrate_lock
-- Held until the migrating transaction ends: a second process waits, then
-- finds nothing left to do.
SELECT pg_advisory_xact_lock(%s)

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {s}

-- name: create_meta
CREATE TABLE IF NOT EXISTS {s}.meta (name text PRIMARY KEY, value text)

-- name: meta_exists
SELECT to_regclass('{s}.meta')

-- name: schema_version
SELECT value FROM {s}.meta WHERE name = 'schema_version'

-- name: set_version
INSERT INTO {s}.meta (name, value) VALUES ('schema_version', %s)
ON CONFLICT (name) DO UPDATE SET value = excluded.value

-- name: listen
-- The channel of the namespace's wake-ups is its schema's name.
LISTEN {s}

-- name: record_progress
-- Only while the delivery's lease holds: a worker that lost it does not
-- overwrite what the job's next holder reports.
INSERT INTO {s}.progress (job_id, done, total, note, at)
    SELECT id, %(done)s, %(total)s, %(note)s, %(at)s FROM {s}.jobs
    WHERE id = %(id)s AND token = %(token)s AND state = 'running'
ON CONFLICT (job_id) DO UPDATE SET
    done = excluded.done, total = excluded.total, note = excluded.note, at = excluded.at

-- name: progress
SELECT done, total, note, at FROM {s}.progress WHERE job_id = %s

-- name: record_step
-- Only while the delivery's lease holds. A step recorded once keeps its
-- first result; the answer is whether the lease held (1 row), recorded now
-- or before.
WITH held AS (
    SELECT id FROM {s}.jobs WHERE id = %(id)s AND token = %(token)s AND state = 'running'
), recorded AS (
    INSERT INTO {s}.steps (job_id, name, result)
    SELECT id, %(name)s, %(result)s FROM held
    ON CONFLICT (job_id, name) DO NOTHING
)
SELECT count(*) FROM held

-- name: step_result
SELECT result FROM {s}.steps WHERE job_id = %s AND name = %s

-- name: last_fired
SELECT fire, job_id FROM {s}.schedules WHERE name = %s

-- name: first_fired
-- Compare-and-set from "no record yet": a row already there wins.
INSERT INTO {s}.schedules (name, fire, job_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING

-- name: next_fired
-- Compare-and-set: only from the fire time the caller read.
UPDATE {s}.schedules SET fire = %s, job_id = %s WHERE name = %s AND fire = %s

-- name: worker_register
INSERT INTO {s}.workers (id, info, started, last_seen, lapses)
VALUES (%(id)s, %(info)s, %(started)s, %(seen)s, %(lapses)s)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen,
    lapses = excluded.lapses

-- name: worker_beat
-- A heartbeat in one statement: the entry refreshed; the workers whose
-- heartbeat lapsed forgotten, and their running jobs made claimable now
-- (their lease ends now: the claim's lapsed-lease path takes them, counting
-- max_deliveries), with a notification per queue for idle workers. Answers
-- the next lapse of another worker and how many jobs were released. (Every
-- part sees the statement's snapshot: the entry refreshed is not counted.)
WITH beat AS (
    INSERT INTO {s}.workers (id, info, started, last_seen, lapses)
    VALUES (%(id)s, %(info)s, %(started)s, %(seen)s, %(lapses)s)
    ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen,
        lapses = excluded.lapses
), gone AS (
    DELETE FROM {s}.workers WHERE lapses <= %(now)s AND id <> %(id)s RETURNING id
), released AS (
    UPDATE {s}.jobs SET due = %(now)s
    WHERE state = 'running' AND due > %(now)s AND holder IN (SELECT id FROM gone)
    RETURNING queue
), woken AS (
    SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM released) AS q
)
SELECT (SELECT min(lapses) FROM {s}.workers WHERE id <> %(id)s AND lapses > %(now)s),
    (SELECT count(*) FROM released), (SELECT count(*) FROM woken)

-- name: worker_leave
DELETE FROM {s}.workers WHERE id = %(id)s

-- name: workers_live
SELECT id, info FROM {s}.workers WHERE lapses > %(now)s ORDER BY started, id
-- name: search_jobs
-- A page of jobs, newest first, older than the cursor: the primary key is
-- walked backwards from there, never skipped over with OFFSET. Text matches
-- the start of a task name (ids and keys: the queries below, first).
SELECT {info_columns}, seq FROM {s}.jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
    AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    AND (%(text)s::text IS NULL OR left(task, length(%(text)s)) = %(text)s)
    AND seq < %(before)s
ORDER BY seq DESC LIMIT %(limit)s

-- name: search_jobs_by_id
SELECT {info_columns}, seq FROM {s}.jobs
WHERE id = %(text)s AND (%(state)s::text IS NULL OR state = %(state)s)
    AND (%(queue)s::text IS NULL OR queue = %(queue)s) AND seq < %(before)s
ORDER BY seq DESC LIMIT %(limit)s

-- name: search_jobs_by_key
SELECT {info_columns}, seq FROM {s}.jobs
WHERE key = %(text)s AND (%(state)s::text IS NULL OR state = %(state)s)
    AND (%(queue)s::text IS NULL OR queue = %(queue)s) AND seq < %(before)s
ORDER BY seq DESC LIMIT %(limit)s

-- name: oldest_ready
-- Claimable: queued or retrying and due, or running with a lapsed lease (its
-- due is the lease's end). The live states spelled as the claim indexes have them.
SELECT queue, min(due) FROM {s}.jobs
WHERE state IN ('queued', 'retrying', 'running') AND due <= %(now)s
GROUP BY queue

-- name: throughput
-- Per minute and queue; the state list repeats the partial index's condition.
SELECT floor(finished / 60) * 60 AS minute, queue,
    count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed')
FROM {s}.jobs
WHERE state IN ('succeeded', 'failed') AND finished >= %(since)s
GROUP BY 1, 2 ORDER BY 1, 2

-- name: limit_take_token
-- The whole of a call that goes, in one statement: a row made for a new
-- limit, or pushed one interval on when a token is there. No row back: refused.
INSERT INTO {s}.limits AS l (name, tat) VALUES (%(name)s, %(now)s + %(interval)s)
ON CONFLICT (name) DO UPDATE SET tat = greatest(l.tat, %(now)s) + %(interval)s
WHERE l.tat - %(burst)s * %(interval)s <= %(now)s
RETURNING l.tat

-- name: limit_lock
-- The limit's row, made if need be, locked until the transaction ends.
INSERT INTO {s}.limits AS l (name) VALUES (%(name)s)
ON CONFLICT (name) DO UPDATE SET name = excluded.name
RETURNING l.tat, l.turn, l.hold

-- name: limit_save
UPDATE {s}.limits SET tat = %(tat)s, turn = %(turn)s, hold = %(hold)s WHERE name = %(name)s

-- name: limit_holders
-- Each holder of a limit's slots, and whether its job still runs under a live lease.
SELECT s.holder, s.since, coalesce(j.state = 'running' AND j.due > %(now)s, false)
FROM {s}.limit_slots s LEFT JOIN {s}.jobs j ON j.id = s.holder
WHERE s.name = %(name)s

-- name: limit_slots_drop
DELETE FROM {s}.limit_slots WHERE name = %(name)s AND holder = ANY(%(holders)s)

-- name: limit_slot_add
INSERT INTO {s}.limit_slots (name, holder, since) VALUES (%(name)s, %(holder)s, %(now)s)
ON CONFLICT DO NOTHING

-- name: limit_slot_release
DELETE FROM {s}.limit_slots WHERE name = %(name)s AND holder = %(holder)s RETURNING since
