"""A broker in this process's memory: the in-process mode's queue.

Fast (a lock, a deque per priority and a dict of leases) and complete:
priorities, ETAs, leases with fencing, idempotency keys, results kept for
their TTL, the dead-letter set and inspection (``MemoryInspector``, which
reads the same structures under the same lock). Nothing survives the
process; use SQLite for that.

The in-process mode calls it for every ``@offload.task`` call, so the path
of a message with no key under ``result_ttl=0`` touches nothing but its
queue and the lease table: a job leaves no trace once acked. A job gets a
record (``Record``) only when something must be remembered about it: a key,
a last error while it waits to retry, or a finished job kept for its TTL.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Sequence
from typing import Any, cast

from ..._clock import SYSTEM_CLOCK, Clock
from ..._locks import TokenLock
from ..._message import DEFAULT_MAX_DELIVERIES, Delivery, ErrorInfo, Message, Outcome, State
from .._base import Lease, keep_for_horizon, lapsed_error, stored_error
from .inspector import MemoryInspector
from .limits import MemoryLimits
from .records import Ledger, Queue
from .schedules import MemorySchedules
from .workers import MemoryRegistry


class MemoryBroker:
    """Messages in a dict of deques; leases tracked per claim.

    ``result_ttl`` (seconds) keeps finished jobs for inspection and key
    reuse; with 0 a finished job is dropped at once, failures included (the
    in-process mode hands every outcome to the caller's handle).
    ``reuse_window``: seconds after a success during which its key returns
    the finished job instead of a new one.
    """

    def __init__(
        self, clock: Clock = SYSTEM_CLOCK, *, result_ttl: float = 86400.0, reuse_window: float = 0.0
    ) -> None:
        self._clock = clock
        self._result_ttl = result_ttl
        self._reuse_window = reuse_window
        # Every pool thread claims under it, and every call enqueues: see ``TokenLock``.
        self._lock = TokenLock()
        self._wakeup = threading.Condition(cast(Any, self._lock))  # any lock-like object
        self._waiting = 0
        self._queues: dict[str, Queue] = {}
        self._delayed: list[tuple[float, int, Message]] = []  # heap by eta
        self._inflight: dict[str, Delivery] = {}
        self.cancel_requested: set[str] = set()  # running jobs someone asked to cancel
        self._ledger = Ledger()
        self._jobs = self._ledger.records  # read on the hot path: one lookup less
        self._tokens = itertools.count(1)
        self._sequence = itertools.count()
        self._next_reclaim = math.inf  # no lease can lapse before this
        self.registry = MemoryRegistry(self)
        """The worker registry (``WorkerRegistry``): live workers, and who holds what."""
        self._inspector = MemoryInspector(self)
        self._schedules = MemorySchedules()
        self._limits = MemoryLimits(self)

    # -- the contract ----------------------------------------------------

    def enqueue(self, messages: Sequence[Message], *, wake: bool = True) -> list[str]:
        """Store ``messages``; ``wake=False``: the caller claims them itself, wake no waiter."""
        if len(messages) == 1 and messages[0].key is None:  # the in-process hot path
            message = messages[0]
            with self._lock:
                if message.eta is None:  # self._store(), inlined for the common case
                    ready_queue(self._queues, message.queue).push(message)
                else:
                    self._store(message)
                if self._waiting and wake:
                    self._wakeup.notify_all()
            return [message.id]
        keep_for_horizon(messages, self._result_ttl)
        with self._lock:
            ids, new = self._plan(messages)  # raises before anything changes
            for message in new:
                self._store(message)
            if self._waiting and new:
                self._wakeup.notify_all()
        return ids

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        now = self._clock.now()
        with self._lock:
            return self._claim(queues, limit, now, now + lease)

    def enqueue_and_claim(
        self, message: Message, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[Delivery]:
        """``enqueue([message], wake=False)``, then ``claim(queues, limit, lease)``, under one lock.

        The in-process caller's own claim for the free slots of its worker
        (``Worker.claim_here``), for a message with no key and no eta. When
        nothing else waits to be claimed, the message is leased at once,
        never queued: what the claim would have picked anyway.
        """
        with self._lock:
            if (
                lease == math.inf  # an embedded worker's: no clock read needed
                and limit > 0
                and queues is None
                and not self._delayed
                and self.registry.holder is None
                and not any(self._queues.values())
            ):
                # self._lease(), inlined: the in-process hot path (and self._leased(),
                # a no-op for an infinite lease held by no registered worker).
                message.attempt += 1
                delivery = Delivery(message, next(self._tokens), math.inf)
                self._inflight[message.id] = delivery
                return [delivery]
            now = self._clock.now()
            until = now + lease
            if self._delayed and self._delayed[0][0] <= now:
                self._promote_due(now)
            if limit > 0 and queues is None and not any(self._queues.values()):
                claimed = [self._lease(message, until)]
                self._leased(claimed, until)
                return claimed
            ready_queue(self._queues, message.queue).push(message)
            return self._claim(queues, limit, now, until) if limit > 0 else []

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        message = delivery.message
        if (
            delivery.lease_until != math.inf
            # self._to_remember(message), inlined: every in-process call asks
            or self._result_ttl
            or message.result_ttl is not None
            or message.key is not None
            or self._jobs
        ):
            return self._ack_recorded(delivery, outcome)
        # The in-process ack: nothing to record, so no lock (and no further call).
        # Every pool thread acks, and the enqueuing caller and the claims take the
        # lock too: a thread switched out while holding it (the GIL's switch
        # interval) made the others queue on it, a context switch each. Without the
        # lock, the entry cannot change between the check and the pop: an infinite
        # lease never lapses, and only the thread that runs a call ends its delivery
        # (``drain`` is for durable workers, which have leases). Dict operations are
        # atomic; whoever iterates the lease table takes a snapshot first.
        job_id = message.id
        current = self._inflight.get(job_id)
        if current is None or current.token != delivery.token:
            return False
        self._inflight.pop(job_id, None)
        if self.cancel_requested:  # a cancel request may have arrived: it ends with the job
            with self._lock:
                self.cancel_requested.discard(job_id)
        return True

    def _ack_recorded(self, delivery: Delivery, outcome: Outcome) -> bool:
        """An ack under the lock: a lease that may lapse, or a record to keep."""
        message = delivery.message
        with self._lock:
            current = self._inflight.get(message.id)  # self._release(), inlined
            if current is None or current.token != delivery.token:
                return False
            del self._inflight[message.id]
            if self.cancel_requested:
                self.cancel_requested.discard(message.id)
            if self._to_remember(message):
                error = stored_error(outcome)
                self._finish(message, outcome.state, outcome.payload, error)
            return True

    def _to_remember(self, message: Message) -> bool:
        """Whether finishing ``message`` leaves a record (a TTL, a key, or records kept)."""
        kept = self._result_ttl or message.result_ttl is not None
        return bool(kept or message.key is not None or self._jobs)

    def nack(
        self,
        delivery: Delivery,
        retry_at: float | None,
        *,
        error: ErrorInfo | None = None,
        penalty: bool = True,
    ) -> bool:
        message = delivery.message
        with self._lock:
            if not self._release(delivery):
                return False
            if not penalty:
                message.attempt -= 1
            if error is not None or message.id in self._jobs:
                record = self._ledger.remember(message)
                record.state = State.RETRYING if error is not None else State.QUEUED
                record.error = error or record.error
            if retry_at is not None:
                message.eta = retry_at
            if retry_at is not None and retry_at > self._clock.now():
                heapq.heappush(self._delayed, (retry_at, next(self._sequence), message))
            else:
                ready_queue(self._queues, message.queue).push(message)
            if self._waiting:  # also for a delay: a waiter may sleep past its eta
                self._wakeup.notify_all()
            return True

    def extend(self, delivery: Delivery, lease: float) -> Lease:
        with self._lock:
            current = self._inflight.get(delivery.message.id)
            if current is None or current.token != delivery.token:
                return Lease.LOST
            delivery.lease_until = self._clock.now() + lease
            return Lease.CANCEL if delivery.message.id in self.cancel_requested else Lease.HELD

    def close(self) -> None:
        self.interrupt()

    @property
    def inspector(self) -> MemoryInspector:
        """What the CLI and handles read: this broker's jobs, under its lock."""
        return self._inspector

    @property
    def schedules(self) -> MemorySchedules:
        """Periodic schedules' fire times (``ScheduleStore``), in this process's memory."""
        return self._schedules

    @property
    def limits(self) -> MemoryLimits:
        """Rate and concurrency limits, kept under this broker's lock."""
        return self._limits

    # -- wake-ups --------------------------------------------------------

    def wait_for_messages(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Block until a message may be claimable (of ``queues``, all for None)."""
        with self._lock:
            names = self._queues if queues is None else queues
            if any(self._queues.get(name) for name in names):
                return
            now = self._clock.now()
            if self._delayed:
                timeout = min(timeout, self._delayed[0][0] - now)
            timeout = min(timeout, self._next_reclaim - now)
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

    # -- internals (called with the lock held) ----------------------------

    def _store(self, message: Message) -> None:
        if message.key is not None:
            self._ledger.keys[message.key] = message.id
            self._ledger.remember(message)
        if message.eta is not None and message.eta > self._clock.now():
            heapq.heappush(self._delayed, (message.eta, next(self._sequence), message))
        else:
            ready_queue(self._queues, message.queue).push(message)

    def _plan(self, messages: Sequence[Message]) -> tuple[list[str], list[Message]]:
        """Each message's job id, and the messages to store, changing nothing yet."""
        ids: list[str] = []
        new: list[Message] = []
        batch_ids: set[str] = set()
        batch_keys: dict[str, str] = {}
        for message in messages:
            if message.id in batch_ids:
                raise ValueError(f"job id {message.id!r} appears twice in one enqueue")
            batch_ids.add(message.id)
            key = message.key
            if key is not None:
                now = self._clock.now()
                horizon = message.key_horizon
                final_since = math.inf if horizon is None else now - horizon
                existing = (
                    batch_keys.get(key)
                    or self._ledger.holder(key, self._inflight)
                    or self._ledger.reusable(key, now - self._reuse_window, final_since)
                )
                if existing is not None:
                    ids.append(existing)
                    continue
                batch_keys[key] = message.id
            ids.append(message.id)
            new.append(message)
        return ids, new

    def _claim(
        self, queues: Sequence[str] | None, limit: int, now: float, until: float
    ) -> list[Delivery]:
        claimed: list[Delivery] = []
        if self._delayed and self._delayed[0][0] <= now:
            self._promote_due(now)
        if now >= self._next_reclaim:
            self._reclaim_lapsed(now)
        if queues is None and len(self._queues) > 1:
            self._claim_by_priority(claimed, limit, until)
        else:
            for name in self._queues if queues is None else queues:
                queue = self._queues.get(name)
                while queue is not None and len(claimed) < limit:
                    message = queue.pop()
                    if message is None:
                        break
                    # self._lease(), inlined: this loop is the in-process hot path.
                    message.attempt += 1
                    delivery = Delivery(message, next(self._tokens), until)
                    self._inflight[message.id] = delivery
                    claimed.append(delivery)
                if len(claimed) >= limit:
                    break
        if claimed:
            self._leased(claimed, until)
        return claimed

    def _leased(self, claimed: list[Delivery], until: float) -> None:
        """Bookkeeping of a claim: when the first lease may lapse, and who holds them."""
        self._next_reclaim = min(self._next_reclaim, until)
        if self.registry.holder is not None:
            self.registry.hold(claimed, self.registry.holder)

    def _lease(self, message: Message, until: float) -> Delivery:
        message.attempt += 1
        delivery = Delivery(message, next(self._tokens), until)
        self._inflight[message.id] = delivery
        return delivery

    def _claim_by_priority(self, claimed: list[Delivery], limit: int, until: float) -> None:
        """Claim across every queue, highest priority first (``queues=None``)."""
        while len(claimed) < limit:
            best: Queue | None = None
            best_priority = 0
            for queue in self._queues.values():
                priority = queue.top()
                if priority is not None and (best is None or priority > best_priority):
                    best, best_priority = queue, priority
            message = best.pop() if best is not None else None
            if message is None:
                return
            claimed.append(self._lease(message, until))

    def _release(self, delivery: Delivery) -> bool:
        current = self._inflight.get(delivery.message.id)
        if current is None or current.token != delivery.token:
            return False
        del self._inflight[delivery.message.id]
        self.cancel_requested.discard(delivery.message.id)
        return True

    def _finish(
        self, message: Message, state: State, result: bytes | None, error: ErrorInfo | None
    ) -> None:
        ttl = self._result_ttl if message.result_ttl is None else message.result_ttl
        self._ledger.finish(message, (state, result, error), ttl, self._clock.now())

    def _promote_due(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            message = heapq.heappop(delayed)[2]
            ready_queue(self._queues, message.queue).push(message)

    def _reclaim_lapsed(self, now: float) -> None:
        running = list(self._inflight.values())  # a snapshot: acks may pop without the lock
        lapsed = [d for d in running if d.lease_until <= now]
        for delivery in lapsed:
            message = delivery.message
            del self._inflight[message.id]
            limit = message.max_deliveries or DEFAULT_MAX_DELIVERIES
            if message.attempt >= limit:
                self._finish(message, State.FAILED, None, lapsed_error(message.attempt))
            else:
                ready_queue(self._queues, message.queue).push(message)
        running = list(self._inflight.values())
        self._next_reclaim = min((d.lease_until for d in running), default=math.inf)


def ready_queue(queues: dict[str, Queue], name: str) -> Queue:
    """The queue ``name`` of ``queues``, made on first use."""
    queue = queues.get(name)
    if queue is None:
        queue = queues[name] = Queue()
    return queue
