-- Migration 6: periodic schedules' last fire times (ScheduleStore).
--
-- One row per schedule: the fire time of the last tick a scheduler enqueued
-- and that tick's job id. Schedulers advance it compare-and-set (an UPDATE
-- whose WHERE names the fire time they read; the row lock orders two at
-- once), so two never both advance it. A new, empty table: nothing rewritten.

CREATE TABLE {s}.schedules (
    name text PRIMARY KEY,
    fire double precision NOT NULL,
    job_id text NOT NULL
);
