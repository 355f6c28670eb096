-- Migration 3: the reply channel of a producer that waits for a job's end.
--
-- Set at enqueue only while the producer listens (PostgresBroker's result
-- feed); the ack then sends the job's outcome there with pg_notify, in its
-- own statement. NULL (every job enqueued before, and every job nobody
-- waits for): the ack sends nothing. A nullable column without a default:
-- adding it rewrites nothing, on any table size.

ALTER TABLE {s}.jobs ADD COLUMN reply_to text;
