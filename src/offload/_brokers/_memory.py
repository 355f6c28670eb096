"""A broker in this process's memory: the in-process mode's queue.

Fast (a lock, a deque per priority and a dict of leases) and complete:
priorities, ETAs, leases with fencing, idempotency keys, results kept for
their TTL, the dead-letter set and inspection. Nothing survives the
process; use SQLite for that.

The in-process mode calls it for every ``@offload.task`` call, so the path
of a message with no key under ``result_ttl=0`` touches nothing but its
queue and the lease table: a job leaves no trace once acked. A job gets a
record (``_Job``) only when something must be remembered about it: a key,
a last error while it waits to retry, or a finished job kept for its TTL.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections import deque
from collections.abc import Iterator, Sequence

from .._clock import SYSTEM_CLOCK, Clock
from .._message import (
    DEFAULT_MAX_DELIVERIES,
    Delivery,
    ErrorInfo,
    JobInfo,
    Message,
    Outcome,
    State,
)
from ._base import lapsed_error, stored_error

_LIVE = (State.QUEUED, State.RETRYING)


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

    def top(self) -> int | None:
        """The highest priority with a message waiting."""
        for priority in self.priorities:
            if self.buckets[priority]:
                return priority
        return None

    def remove(self, job_id: str) -> Message | None:
        for bucket in self.buckets.values():
            for index, message in enumerate(bucket):
                if message.id == job_id:
                    del bucket[index]
                    return message
        return None

    def __iter__(self) -> Iterator[Message]:
        for bucket in self.buckets.values():
            yield from bucket

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.buckets.values())


class _Job:
    """What must be remembered about one job beyond its place in a queue."""

    __slots__ = ("error", "expires", "finished", "message", "result", "state")

    def __init__(self, message: Message, state: State = State.QUEUED) -> None:
        self.message = message
        self.state = state  # queued/retrying while live (running: it is in _inflight)
        self.finished: float | None = None
        self.expires = math.inf  # when prune() may drop it
        self.result: bytes | None = None
        self.error: ErrorInfo | None = None


class _Ledger:
    """What the broker remembers about jobs beyond their place in a queue.

    Records by job id, the newest job of each key, and when finished jobs
    expire. Every method is called with the broker's lock held.
    """

    __slots__ = ("expiry", "keys", "next_prune", "records")

    # Opportunistic pruning of expired results, at most this often (seconds).
    PRUNE_EVERY = 60.0

    def __init__(self) -> None:
        self.records: dict[str, _Job] = {}
        self.keys: dict[str, str] = {}  # key -> id of the newest job with it
        self.expiry: list[tuple[float, str]] = []  # heap of (expires, id), lazily pruned
        self.next_prune = 0.0

    def remember(self, message: Message) -> _Job:
        record = self.records.get(message.id)
        if record is None:
            record = self.records[message.id] = _Job(message)
        return record

    def drop(self, message: Message) -> None:
        self.records.pop(message.id, None)
        if message.key is not None and self.keys.get(message.key) == message.id:
            del self.keys[message.key]

    def finish(
        self,
        message: Message,
        outcome: tuple[State, bytes | None, ErrorInfo | None],
        ttl: float,
        now: float,
    ) -> None:
        """Record a finished job (state, result, last error), or forget it for a zero TTL."""
        if ttl <= 0:
            self.drop(message)
            return
        record = self.remember(message)
        record.state, record.result, record.error = outcome
        record.finished = now
        if record.state is not State.FAILED:  # the dead-letter set stays until purged
            record.expires = now + ttl
            heapq.heappush(self.expiry, (record.expires, message.id))
        if now >= self.next_prune:
            self.prune(now)

    def prune(self, now: float) -> int:
        self.next_prune = now + self.PRUNE_EVERY
        pruned = 0
        expiry = self.expiry
        while expiry and expiry[0][0] <= now:
            expires, job_id = heapq.heappop(expiry)
            record = self.records.get(job_id)
            # Entries stay when a job is purged or retried: skip the stale ones.
            if record is not None and record.expires == expires and record.state.finished:
                self.drop(record.message)
                pruned += 1
        return pruned

    def holder(self, key: str, running: dict[str, Delivery]) -> str | None:
        """The queued, retrying or running job with ``key``."""
        job_id = self.keys.get(key)
        if job_id is None:
            return None
        record = self.records.get(job_id)
        if job_id in running or (record is not None and record.state in _LIVE):
            return job_id
        return None

    def reusable(self, key: str, since: float) -> str | None:
        """The job with ``key`` if it succeeded after ``since``."""
        record = self.records.get(self.keys.get(key, ""))
        if (
            record is not None
            and record.state is State.SUCCEEDED
            and record.finished is not None
            and record.finished > since
        ):
            return record.message.id
        return None


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
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._waiting = 0
        self._queues: dict[str, _Queue] = {}
        self._delayed: list[tuple[float, int, Message]] = []  # heap by eta
        self._inflight: dict[str, Delivery] = {}
        self._ledger = _Ledger()
        self._jobs = self._ledger.records  # read on the hot path: one lookup less
        self._tokens = itertools.count(1)
        self._sequence = itertools.count()
        self._next_reclaim = math.inf  # no lease can lapse before this

    # -- the contract ----------------------------------------------------

    def enqueue(self, messages: Sequence[Message], *, wake: bool = True) -> list[str]:
        """Store ``messages``; ``wake=False``: the caller claims them itself, wake no waiter."""
        if len(messages) == 1 and messages[0].key is None:  # the in-process hot path
            message = messages[0]
            with self._lock:
                if message.eta is None:  # self._store(), inlined for the common case
                    self._ready_queue(message.queue).push(message)
                else:
                    self._store(message)
                if self._waiting and wake:
                    self._wakeup.notify_all()
            return [message.id]
        with self._lock:
            ids, new = self._plan(messages)  # raises before anything changes
            for message in new:
                self._store(message)
            if self._waiting and new:
                self._wakeup.notify_all()
        return ids

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        now = self._clock.now()
        claimed: list[Delivery] = []
        until = now + lease
        with self._lock:
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
            if claimed and until < self._next_reclaim:
                self._next_reclaim = until
        return claimed

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        message = delivery.message
        with self._lock:
            current = self._inflight.get(message.id)  # self._release(), inlined
            if current is None or current.token != delivery.token:
                return False
            del self._inflight[message.id]
            # Nothing to remember about a keyless job under a zero TTL: skip
            # the bookkeeping (the in-process hot path).
            if (
                self._result_ttl
                or message.result_ttl is not None
                or message.key is not None
                or self._jobs
            ):
                error = stored_error(outcome)
                self._finish(message, outcome.state, outcome.payload, error)
            return True

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
                self._ready_queue(message.queue).push(message)
            if self._waiting:  # also for a delay: a waiter may sleep past its eta
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

    # -- inspection --------------------------------------------------------

    def job(self, job_id: str) -> JobInfo | None:
        with self._lock:
            delivery = self._inflight.get(job_id)
            if delivery is not None:
                return _info(delivery.message, State.RUNNING, self._jobs)
            record = self._jobs.get(job_id)
            if record is not None and record.state.finished:
                return _info(record.message, record.state, self._jobs)
            for message, state in self._every_job():  # a queued job: scan
                if message.id == job_id:
                    return _info(message, state, self._jobs)
        return None

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        # Only durable apps poll states, and they never use this broker in
        # production: one lookup per id is enough here.
        found = ((job_id, self.job(job_id)) for job_id in job_ids)
        return {job_id: job.state for job_id, job in found if job is not None}

    def counts(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        with self._lock:
            for message, state in self._every_job():
                per_queue = counts.setdefault(message.queue, {})
                per_queue[state] = per_queue.get(state, 0) + 1
        return counts

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        with self._lock:
            found = [
                (message, job_state)
                for message, job_state in self._every_job()
                if (state is None or job_state is state)
                and (queue is None or message.queue == queue)
            ]
            # Ids start with their creation time: newest first is highest id first.
            found.sort(key=lambda pair: pair[0].id, reverse=True)
            return [_info(message, job_state, self._jobs) for message, job_state in found[:limit]]

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            message = _take_waiting(self._queues, self._delayed, job_id)
            if message is None:
                return False
            record = self._jobs.get(job_id)
            last_error = None if record is None else record.error  # kept: no attempt ended
            self._finish(message, State.CANCELLED, None, last_error)
            return True

    def retry(self, job_id: str) -> bool:
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or record.state not in (State.FAILED, State.CANCELLED):
                return False
            message = record.message
            if message.key is not None and self._ledger.holder(message.key, self._inflight):
                return False  # another job holds the key now: two would run
            del self._jobs[job_id]
            message.attempt, message.eta = 0, None
            self._store(message)
            if self._waiting:
                self._wakeup.notify_all()
            return True

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        if not state.finished:
            raise ValueError(
                f"purge deletes finished jobs (succeeded, failed, cancelled), not {state}"
            )
        with self._lock:
            doomed = [
                record
                for record in self._jobs.values()
                if record.state is state and (queue is None or record.message.queue == queue)
            ]
            for record in doomed:
                self._ledger.drop(record.message)
            return len(doomed)

    def prune(self) -> int:
        with self._lock:
            return self._ledger.prune(self._clock.now())

    # -- internals (called with the lock held) ----------------------------

    def _ready_queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _store(self, message: Message) -> None:
        if message.key is not None:
            self._ledger.keys[message.key] = message.id
            self._ledger.remember(message)
        if message.eta is not None and message.eta > self._clock.now():
            heapq.heappush(self._delayed, (message.eta, next(self._sequence), message))
        else:
            self._ready_queue(message.queue).push(message)

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
                existing = (
                    batch_keys.get(key)
                    or self._ledger.holder(key, self._inflight)
                    or self._ledger.reusable(key, self._clock.now() - self._reuse_window)
                )
                if existing is not None:
                    ids.append(existing)
                    continue
                batch_keys[key] = message.id
            ids.append(message.id)
            new.append(message)
        return ids, new

    def _lease(self, message: Message, until: float) -> Delivery:
        message.attempt += 1
        delivery = Delivery(message, next(self._tokens), until)
        self._inflight[message.id] = delivery
        return delivery

    def _claim_by_priority(self, claimed: list[Delivery], limit: int, until: float) -> None:
        """Claim across every queue, highest priority first (``queues=None``)."""
        while len(claimed) < limit:
            best: _Queue | None = None
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
            self._ready_queue(message.queue).push(message)

    def _reclaim_lapsed(self, now: float) -> None:
        lapsed = [d for d in self._inflight.values() if d.lease_until <= now]
        for delivery in lapsed:
            message = delivery.message
            del self._inflight[message.id]
            limit = message.max_deliveries or DEFAULT_MAX_DELIVERIES
            if message.attempt >= limit:
                self._finish(message, State.FAILED, None, lapsed_error(message.attempt))
            else:
                self._ready_queue(message.queue).push(message)
        self._next_reclaim = min((d.lease_until for d in self._inflight.values()), default=math.inf)

    def _every_job(self) -> Iterator[tuple[Message, State]]:
        """Every job with its state: a scan, for inspection only."""
        for delivery in self._inflight.values():
            yield delivery.message, State.RUNNING
        waiting = itertools.chain(
            itertools.chain.from_iterable(self._queues.values()),
            (entry[2] for entry in self._delayed),
        )
        for message in waiting:
            record = self._jobs.get(message.id)
            yield message, State.QUEUED if record is None else record.state
        for record in self._jobs.values():
            if record.state.finished:
                yield record.message, record.state


def _take_waiting(
    queues: dict[str, _Queue], delayed: list[tuple[float, int, Message]], job_id: str
) -> Message | None:
    """Remove a queued or retrying job from where it waits (a scan)."""
    for queue in queues.values():
        message = queue.remove(job_id)
        if message is not None:
            return message
    for index, (_, _, message) in enumerate(delayed):
        if message.id == job_id:
            delayed[index] = delayed[-1]
            delayed.pop()
            heapq.heapify(delayed)
            return message
    return None


def _info(message: Message, state: State, records: dict[str, _Job]) -> JobInfo:
    record = records.get(message.id)
    return JobInfo(
        id=message.id,
        task=message.task,
        queue=message.queue,
        state=state,
        attempt=message.attempt,
        priority=message.priority,
        eta=message.eta,
        created=message.created,
        finished=record.finished if record is not None else None,
        key=message.key,
        max_deliveries=message.max_deliveries,
        payload=message.payload,
        result=record.result if record is not None else None,
        error=record.error if record is not None else None,
    )
