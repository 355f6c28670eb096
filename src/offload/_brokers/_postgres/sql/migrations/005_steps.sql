-- Migration 5: the results of jobs' durable steps (offload.step), deleted
-- with their job.

CREATE TABLE {s}.steps (
    job_id text NOT NULL REFERENCES {s}.jobs (id) ON DELETE CASCADE,
    name text NOT NULL,
    result bytea NOT NULL,
    PRIMARY KEY (job_id, name)
);
