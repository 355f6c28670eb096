"""Periodic schedules' fire times in the SQLite file (``ScheduleStore``).

One row per schedule in ``schedules`` (migration 003), advanced
compare-and-set: the statement itself checks the fire time the caller read,
inside SQLite's write lock, so two processes can never both advance it.
"""

from __future__ import annotations

from .._base import Fired
from .connection import Database
from .schema import QUERIES


class SqliteSchedules:
    """The ``schedules`` table, through the broker's connection and lock."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def last_fired(self, schedule: str) -> Fired | None:
        rows = self._database.read(QUERIES["last_fired"], (schedule,))
        if not rows:
            return None
        fire, job_id = rows[0]
        return Fired(float(fire), str(job_id))

    def record_fired(self, schedule: str, previous: float | None, fired: Fired) -> bool:
        if previous is None:
            params: tuple[object, ...] = (schedule, fired.fire, fired.job_id)
            return self._database.change(QUERIES["first_fired"], params) == 1
        params = (fired.fire, fired.job_id, schedule, previous)
        return self._database.change(QUERIES["next_fired"], params) == 1
