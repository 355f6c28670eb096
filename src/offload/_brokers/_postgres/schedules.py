"""Periodic schedules' fire times in the PostgreSQL schema (``ScheduleStore``).

One row per schedule in ``{schema}.schedules`` (migration 004), advanced
compare-and-set: the UPDATE's WHERE names the fire time the caller read,
and the row lock makes a second scheduler's UPDATE see the first's value.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._base import Fired
from .link import Link
from .values import storable_text


class PostgresSchedules:
    """The ``schedules`` table, on the broker's ``Link``."""

    def __init__(self, link: Link, sql: Mapping[str, str]) -> None:
        self._link = link
        self._sql = sql

    def last_fired(self, schedule: str) -> Fired | None:
        if not storable_text(schedule):
            return None
        statement = self._sql["last_fired"]
        row = self._link.run(lambda c: c.execute(statement, (schedule,)).fetchone())
        return None if row is None else Fired(float(row[0]), str(row[1]))

    def record_fired(self, schedule: str, previous: float | None, fired: Fired) -> bool:
        # A retry after a commit we never heard of answers False: the caller
        # reads the record again and finds its own tick there.
        if previous is None:
            statement = self._sql["first_fired"]
            params: tuple[object, ...] = (schedule, fired.fire, fired.job_id)
        else:
            statement = self._sql["next_fired"]
            params = (fired.fire, fired.job_id, schedule, previous)
        return bool(self._link.run(lambda c: c.execute(statement, params).rowcount) == 1)
