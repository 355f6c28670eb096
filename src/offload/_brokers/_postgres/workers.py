"""The PostgreSQL broker's worker registry: the ``workers`` table and ``jobs.holder``.

A heartbeat is one statement per worker and interval (``worker_beat`` in
``sql/queries.sql``): its entry refreshed, the running jobs of lapsed
workers made claimable and announced, those workers forgotten. Claims
write their holder in their own ``UPDATE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._clock import Clock
from .._base import WorkerInfo
from .._workers import decode_worker, encode_worker
from .link import Link


class PostgresRegistry:
    """Live workers in the namespace's schema (``broker.registry``)."""

    def __init__(self, link: Link, sql: Mapping[str, str], channel: str, clock: Clock) -> None:
        self._link = link
        self._sql = sql
        self._channel = channel  # where idle workers listen for claimable jobs
        self._clock = clock
        self.holder: str | None = None

    def register(self, info: WorkerInfo, lapse: float) -> None:
        params = _entry(info, lapse)
        self._link.run(lambda c: c.execute(self._sql["worker_register"], params))
        if self.holder is None:
            self.holder = info.id

    def heartbeat(self, info: WorkerInfo, lapse: float) -> float | None:
        params = {**_entry(info, lapse), "now": self._clock.now(), "channel": self._channel}
        row = self._link.run(lambda c: c.execute(self._sql["worker_beat"], params).fetchone())
        next_lapse = None if row is None else row[0]
        return None if next_lapse is None else float(next_lapse)

    def unregister(self, worker_id: str) -> None:
        self._link.run(lambda c: c.execute(self._sql["worker_leave"], {"id": worker_id}))
        if self.holder == worker_id:
            self.holder = None


def _entry(info: WorkerInfo, lapse: float) -> dict[str, Any]:
    return {
        "id": info.id,
        "info": encode_worker(info),
        "started": info.started,
        "seen": info.last_seen,
        "lapses": info.last_seen + lapse,
    }


def live_workers(rows: list[tuple[Any, ...]]) -> list[WorkerInfo]:
    """``workers_live`` rows as ``WorkerInfo``; a malformed entry keeps its id."""
    return [decode_worker(info if isinstance(info, str) else "", str(i)) for i, info in rows]
