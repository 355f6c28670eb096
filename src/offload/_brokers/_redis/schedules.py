"""Periodic schedules' fire times in Redis (``ScheduleStore``).

The hash ``<prefix>schedules`` maps a schedule's name to "<fire> <job id>";
``lua/fire.lua`` advances it compare-and-set, in one script, so two
schedulers can never both advance it from the same value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._base import Fired
from .link import Link, Script

_T = TypeVar("_T")


class RedisSchedules:
    """The ``schedules`` hash, through the broker's link and outage handling."""

    def __init__(
        self, prefix: str, link: Link, fire: Script, call: Callable[[Callable[[bool], Any]], Any]
    ) -> None:
        self._key = f"{prefix}schedules"
        self._prefix = prefix
        self._link = link
        self._fire = fire
        self._call = call

    def last_fired(self, schedule: str) -> Fired | None:
        value = self._call(lambda _: self._link.call("HGET", self._key, schedule))
        if value is None:
            return None
        fire, _, job_id = bytes(value).decode("utf-8", "replace").partition(" ")
        try:
            return Fired(float(fire), job_id)
        except ValueError:  # overwritten by hand: as if it never fired
            return None

    def record_fired(self, schedule: str, previous: float | None, fired: Fired) -> bool:
        expected = "" if previous is None else repr(float(previous))
        args = [self._prefix, schedule, expected, repr(float(fired.fire)), fired.job_id]
        return bool(self._call(lambda _: int(self._fire(args=args))) == 1)
