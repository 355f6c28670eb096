-- What running tasks report of their progress (offload.current().progress),
-- one row per job, deleted with its job.

CREATE TABLE progress (
    job_id TEXT PRIMARY KEY,
    done REAL NOT NULL,
    total REAL,
    note TEXT,
    at REAL NOT NULL
);

CREATE TRIGGER progress_goes_with_its_job AFTER DELETE ON jobs
BEGIN
    DELETE FROM progress WHERE job_id = old.id;
END;
