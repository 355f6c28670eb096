-- Rate and concurrency limits, shared by every process that opens the file.
--
-- One row per limit (a task, or a task and a limit key): for a rate, the
-- theoretical arrival time of the next call (GCRA); for both, the turn handed
-- to the next refused caller; for concurrency, the average time a slot is
-- held. One row per held slot: a slot counts while its job is running under a
-- live lease (jobs.due), so a killed worker's slot comes back with its lease.

CREATE TABLE limits (
    name TEXT PRIMARY KEY,
    tat REAL NOT NULL DEFAULT 0,
    turn REAL NOT NULL DEFAULT 0,
    hold REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE limit_slots (
    name TEXT NOT NULL,
    holder TEXT NOT NULL,  -- the id of the job that holds it
    since REAL NOT NULL,
    PRIMARY KEY (name, holder)
) WITHOUT ROWID;
