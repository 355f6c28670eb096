"""The memory broker's worker registry: entries, and the holder of each running claim.

It serves workers of one process (the memory broker lives in one), so a
lapse only happens to a worker whose heartbeat thread stalled; it is kept
so that every broker answers the same contract. Like the inspector, it is
the broker's friend: it works on the broker's structures under its lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._message import Delivery
from .._base import WorkerInfo

if TYPE_CHECKING:
    from .broker import MemoryBroker


class MemoryRegistry:
    """Registered workers with their lapse times, and which worker holds which claim."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._entries: dict[str, tuple[WorkerInfo, float]] = {}  # id: (info, lapses at)
        self._held: dict[int, str] = {}  # fencing token: holder (claims of a registered worker)
        self.holder: str | None = None

    def hold(self, claimed: list[Delivery], holder: str) -> None:
        """Called by the broker's claim, its lock held."""
        for delivery in claimed:
            self._held[delivery.token] = holder

    def register(self, info: WorkerInfo, lapse: float) -> None:
        with self._broker._lock:
            self._entries[info.id] = (info, info.last_seen + lapse)
            if self.holder is None:
                self.holder = info.id

    def heartbeat(self, info: WorkerInfo, lapse: float) -> float | None:
        broker = self._broker
        now = broker._clock.now()
        with broker._lock:
            self._entries[info.id] = (info, info.last_seen + lapse)
            gone = {w for w, (_, until) in self._entries.items() if until <= now}
            for worker in gone:
                del self._entries[worker]
            inflight = list(broker._inflight.values())  # a snapshot: in-process acks take no lock
            tokens = {delivery.token for delivery in inflight}
            self._held = {token: w for token, w in self._held.items() if token in tokens}
            released = [d for d in inflight if self._held.get(d.token) in gone]
            for delivery in released:
                delivery.lease_until = min(delivery.lease_until, now)
            if released:
                broker._next_reclaim = min(d.lease_until for d in inflight)
                if broker._waiting:
                    broker._wakeup.notify_all()
            return min((u for w, (_, u) in self._entries.items() if w != info.id), default=None)

    def unregister(self, worker_id: str) -> None:
        with self._broker._lock:
            self._entries.pop(worker_id, None)
            if self.holder == worker_id:
                self.holder = None

    def live(self, now: float) -> list[WorkerInfo]:
        """The listing (``MemoryInspector.workers``); the caller holds the broker's lock."""
        alive = [info for info, until in self._entries.values() if until > now]
        return sorted(alive, key=lambda info: (info.started, info.id))
