"""The Redis broker's worker registry: ``workers`` (a sorted set by lapse time) and entries.

Keys under the namespace's prefix: ``workers`` holds each worker's id,
scored by when its heartbeat lapses (on the workers' clock, as leases
are); ``worker:<id>`` its entry (JSON), with a key expiry as a backstop
for a namespace nobody beats in any more. A claim through a registered
broker object writes the holder into the job's hash (field ``h``, in the
claim script's own write). A heartbeat is one script (``lua/workers.lua``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import redis

from ..._clock import Clock
from .._base import WorkerInfo
from .._workers import decode_worker, encode_worker
from .link import Script

_T = TypeVar("_T")
Call = Callable[[Callable[[bool], _T]], _T]

KEY_LIVES = 10
"""An entry's key lives this many lapses: the listing goes by scores, the expiry only cleans up."""


class RedisRegistry:
    """Live workers of one namespace (``broker.registry``)."""

    def __init__(
        self, prefix: str, clock: Clock, client: redis.Redis, script: Script, call: Call[object]
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._client = client
        self._script = script
        self._call = call
        self.holder: str | None = None

    def register(self, info: WorkerInfo, lapse: float) -> None:
        self._beat(info, lapse)
        if self.holder is None:
            self.holder = info.id

    def heartbeat(self, info: WorkerInfo, lapse: float) -> float | None:
        next_lapse, _released = self._beat(info, lapse)
        return None if next_lapse is None else float(next_lapse)

    def _beat(self, info: WorkerInfo, lapse: float) -> tuple[bytes | None, int]:
        args = [
            self._prefix,
            repr(self._clock.now()),
            info.id,
            repr(info.last_seen + lapse),
            encode_worker(info),
            max(1000, int(lapse * 1000 * KEY_LIVES)),
        ]
        answer = cast("list[object]", self._call(lambda _: self._script(args=args)))
        next_lapse, released = answer
        return (next_lapse if isinstance(next_lapse, bytes) else None), int(cast("int", released))

    def unregister(self, worker_id: str) -> None:
        def run(_: bool) -> object:
            pipe = self._client.pipeline(transaction=True)
            pipe.zrem(f"{self._prefix}workers", worker_id)
            pipe.delete(f"{self._prefix}worker:{worker_id}")
            return pipe.execute()

        self._call(run)
        if self.holder == worker_id:
            self.holder = None


def live_workers(client: redis.Redis, prefix: str, now: float) -> list[WorkerInfo]:
    """The workers whose heartbeat has not lapsed, oldest first (``RedisInspector.workers``)."""
    ids = cast("list[bytes]", client.zrangebyscore(f"{prefix}workers", f"({now!r}", "+inf"))
    if not ids:
        return []
    names = [raw.decode("utf-8", "replace") for raw in ids]
    entries = cast("list[bytes | None]", client.mget([f"{prefix}worker:{n}" for n in names]))
    found = []
    for name, entry in zip(names, entries, strict=True):
        if entry is None:  # expired or deleted behind the score: not live
            continue
        found.append(decode_worker(entry, name))
    return sorted(found, key=lambda info: (info.started, info.id))
