-- Migration 9: rate and concurrency limits, shared by every worker of the namespace.
--
-- One row per limit (a task, or a task and a limit key): for a rate, the
-- theoretical arrival time of the next call (GCRA); for both, the turn handed
-- to the next refused caller; for concurrency, the average time a slot is
-- held. One row per held slot: a slot counts while its job is running under
-- a live lease (jobs.due), so a killed worker's slot comes back with its lease.

CREATE TABLE {s}.limits (
    name text PRIMARY KEY,
    tat double precision NOT NULL DEFAULT 0,
    turn double precision NOT NULL DEFAULT 0,
    hold double precision NOT NULL DEFAULT 0
);

CREATE TABLE {s}.limit_slots (
    name text NOT NULL,
    holder text NOT NULL,  -- the id of the job that holds it
    since double precision NOT NULL,
    PRIMARY KEY (name, holder)
);
