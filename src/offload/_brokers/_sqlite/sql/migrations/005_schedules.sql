-- Migration 5: periodic schedules' last fire times (ScheduleStore).
--
-- One row per schedule: the fire time of the last tick a scheduler enqueued
-- and that tick's job id. Schedulers advance it compare-and-set (an UPDATE
-- whose WHERE names the fire time they read), so two never both advance it.

CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    fire REAL NOT NULL,
    job_id TEXT NOT NULL
) WITHOUT ROWID;
