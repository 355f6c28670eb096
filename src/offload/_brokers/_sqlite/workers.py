"""The SQLite broker's worker registry: the ``workers`` table and ``jobs.holder``.

A heartbeat is one write transaction per worker and interval: its entry
refreshed, the running jobs of lapsed workers made claimable, those
workers forgotten. Claims write their holder in their own ``UPDATE``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..._clock import Clock
from .._base import WorkerInfo
from .._workers import decode_worker, encode_worker
from .connection import Database
from .schema import QUERIES


class SqliteRegistry:
    """Live workers in the broker's file (``broker.registry``)."""

    def __init__(self, database: Database, clock: Clock, notify: Callable[[], None]) -> None:
        self._database = database
        self._clock = clock
        self._notify = notify  # wakes this process's waiters: jobs became claimable
        self.holder: str | None = None

    def register(self, info: WorkerInfo, lapse: float) -> None:
        with self._database.write() as db:
            db.execute(QUERIES["worker_beat"], _entry(info, lapse))
        if self.holder is None:
            self.holder = info.id

    def heartbeat(self, info: WorkerInfo, lapse: float) -> float | None:
        now = self._clock.now()
        with self._database.write() as db:
            db.execute(QUERIES["worker_beat"], _entry(info, lapse))
            released = db.execute(QUERIES["workers_release"], (now,)).rowcount
            db.execute(QUERIES["workers_forget"], (now,))
            ((next_lapse,),) = db.execute(QUERIES["workers_next_lapse"], (info.id,)).fetchall()
        if released:
            self._notify()
        return float(next_lapse) if isinstance(next_lapse, (int, float)) else None

    def unregister(self, worker_id: str) -> None:
        with self._database.write() as db:
            db.execute(QUERIES["worker_leave"], (worker_id,))
        if self.holder == worker_id:
            self.holder = None


def _entry(info: WorkerInfo, lapse: float) -> tuple[object, ...]:
    return (info.id, encode_worker(info), info.started, info.last_seen, info.last_seen + lapse)


def live_workers(rows: list[tuple[object, ...]]) -> list[WorkerInfo]:
    """``workers_live`` rows as ``WorkerInfo``; a malformed entry keeps its id."""
    found = []
    for worker_id, info in rows:
        text = info if isinstance(info, (str, bytes)) else ""
        found.append(decode_worker(text, str(worker_id)))
    return found
