-- Migration 4: what running tasks report of their progress
-- (offload.current().progress), one row per job, deleted with its job.

CREATE TABLE {s}.progress (
    job_id text PRIMARY KEY REFERENCES {s}.jobs (id) ON DELETE CASCADE,
    done double precision NOT NULL,
    total double precision,
    note text,
    at double precision NOT NULL
);
