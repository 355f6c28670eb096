"""A broker in this process's memory: the in-process mode's queue.

Fast (a lock, a deque and a dict per message) and complete: priorities,
ETAs, leases with fencing. Nothing survives the process; use SQLite for
that.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Sequence

from .._clock import SYSTEM_CLOCK, Clock
from .._message import Delivery, Message, Outcome


class _Queue:
    """One named queue: a FIFO per priority, highest priority first."""

    __slots__ = ("buckets", "priorities")

    def __init__(self) -> None:
        self.buckets: dict[int, deque[Message]] = {}
        self.priorities: list[int] = []  # kept sorted, highest first

    def push(self, message: Message) -> None:
        bucket = self.buckets.get(message.priority)
        if bucket is None:
            bucket = self.buckets[message.priority] = deque()
            self.priorities.append(message.priority)
            self.priorities.sort(reverse=True)
        bucket.append(message)

    def pop(self) -> Message | None:
        for priority in self.priorities:
            bucket = self.buckets[priority]
            if bucket:
                return bucket.popleft()
        return None

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.buckets.values())


class MemoryBroker:
    """Messages in a dict of deques; leases tracked per claim."""

    # How often a claim looks for lapsed leases, as a fraction of the lease.
    _RECLAIM_EVERY = 0.25

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._waiting = 0
        self._queues: dict[str, _Queue] = {}
        self._delayed: list[tuple[float, int, Message]] = []  # heap by eta
        self._inflight: dict[str, Delivery] = {}
        self._tokens = itertools.count(1)
        self._sequence = itertools.count()
        self._next_reclaim = 0.0

    # -- the contract ----------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> None:
        with self._lock:
            for message in messages:
                if message.eta is not None and message.eta > self._clock.now():
                    heapq.heappush(self._delayed, (message.eta, next(self._sequence), message))
                else:
                    self._ready_queue(message.queue).push(message)
            if self._waiting:
                self._wakeup.notify_all()

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        now = self._clock.now()
        claimed: list[Delivery] = []
        with self._lock:
            if self._delayed and self._delayed[0][0] <= now:
                self._promote_due(now)
            if now >= self._next_reclaim and self._inflight:
                self._reclaim_lapsed(now)
                self._next_reclaim = now + lease * self._RECLAIM_EVERY
            names = self._queues if queues is None else queues
            for name in names:
                queue = self._queues.get(name)
                while queue is not None and len(claimed) < limit:
                    message = queue.pop()
                    if message is None:
                        break
                    message.attempt += 1
                    delivery = Delivery(message, next(self._tokens), now + lease)
                    self._inflight[message.id] = delivery
                    claimed.append(delivery)
                if len(claimed) >= limit:
                    break
        return claimed

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        with self._lock:
            return self._release(delivery)

    def nack(self, delivery: Delivery, retry_at: float | None) -> bool:
        with self._lock:
            if not self._release(delivery):
                return False
            message = delivery.message
            if retry_at is not None and retry_at > self._clock.now():
                heapq.heappush(self._delayed, (retry_at, next(self._sequence), message))
            else:
                self._ready_queue(message.queue).push(message)
            if self._waiting:
                self._wakeup.notify_all()
            return True

    def extend(self, delivery: Delivery, lease: float) -> bool:
        with self._lock:
            current = self._inflight.get(delivery.message.id)
            if current is None or current.token != delivery.token:
                return False
            delivery.lease_until = self._clock.now() + lease
            return True

    def close(self) -> None:
        self.interrupt()

    # -- wake-ups --------------------------------------------------------

    def wait_for_messages(self, timeout: float) -> None:
        with self._lock:
            if any(self._queues.values()):
                return
            if self._delayed:
                timeout = min(timeout, self._delayed[0][0] - self._clock.now())
            if timeout <= 0:
                return
            self._waiting += 1
            try:
                self._clock.wait(self._wakeup, timeout)
            finally:
                self._waiting -= 1

    def interrupt(self) -> None:
        with self._lock:
            self._wakeup.notify_all()

    # -- inspection --------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Messages per state: ``queued`` (due now), ``scheduled``, ``running``."""
        with self._lock:
            return {
                "queued": sum(len(q) for q in self._queues.values()),
                "scheduled": len(self._delayed),
                "running": len(self._inflight),
            }

    # -- internals (called with the lock held) ----------------------------

    def _ready_queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _release(self, delivery: Delivery) -> bool:
        current = self._inflight.get(delivery.message.id)
        if current is None or current.token != delivery.token:
            return False
        del self._inflight[delivery.message.id]
        return True

    def _promote_due(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            message = heapq.heappop(delayed)[2]
            self._ready_queue(message.queue).push(message)

    def _reclaim_lapsed(self, now: float) -> None:
        lapsed = [d for d in self._inflight.values() if d.lease_until <= now]
        for delivery in lapsed:
            del self._inflight[delivery.message.id]
            self._ready_queue(delivery.message.queue).push(delivery.message)
