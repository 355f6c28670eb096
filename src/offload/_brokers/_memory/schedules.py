"""Periodic schedules' fire times in memory: a dict under a lock (``ScheduleStore``)."""

from __future__ import annotations

import threading

from .._base import Fired


class MemorySchedules:
    """The last tick of each schedule, compare-and-set under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired: dict[str, Fired] = {}

    def last_fired(self, schedule: str) -> Fired | None:
        with self._lock:
            return self._fired.get(schedule)

    def record_fired(self, schedule: str, previous: float | None, fired: Fired) -> bool:
        with self._lock:
            current = self._fired.get(schedule)
            if (None if current is None else current.fire) != previous:
                return False
            self._fired[schedule] = fired
            return True
