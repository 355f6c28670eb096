-- The results of jobs' durable steps (offload.step), deleted with their job.

CREATE TABLE steps (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    result BLOB NOT NULL,
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;

CREATE TRIGGER steps_go_with_their_job AFTER DELETE ON jobs
BEGIN
    DELETE FROM steps WHERE job_id = old.id;
END;
