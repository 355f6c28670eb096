"""What the memory broker keeps: queues of messages, and records of jobs beyond them.

A job gets a record (``Record``) only when something must be remembered
about it: a key, a last error while it waits to retry, or a finished job
kept for its TTL. The broker and its inspector share these structures,
always under the broker's lock.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator

from ..._message import Delivery, ErrorInfo, Message, State

LIVE = (State.QUEUED, State.RETRYING)
"""The states of a job that waits in a queue (running: it is in the lease table)."""


class Queue:
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

    def __bool__(self) -> bool:
        # Asked on every in-process call ("is anything waiting?"): no generator.
        return any(self.buckets.values())


class Record:
    """What must be remembered about one job beyond its place in a queue."""

    __slots__ = ("error", "expires", "finished", "message", "result", "state")

    def __init__(self, message: Message, state: State = State.QUEUED) -> None:
        self.message = message
        self.state = state  # queued/retrying while live (running: it is in the lease table)
        self.finished: float | None = None
        self.expires = math.inf  # when prune() may drop it
        self.result: bytes | None = None
        self.error: ErrorInfo | None = None


class Ledger:
    """What the broker remembers about jobs beyond their place in a queue.

    Records by job id, the newest job of each key, and when finished jobs
    expire. Every method is called with the broker's lock held.
    """

    __slots__ = ("expiry", "keys", "next_prune", "records")

    # Opportunistic pruning of expired results, at most this often (seconds).
    PRUNE_EVERY = 60.0

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.keys: dict[str, str] = {}  # key -> id of the newest job with it
        self.expiry: list[tuple[float, str]] = []  # heap of (expires, id), lazily pruned
        self.next_prune = 0.0

    def remember(self, message: Message) -> Record:
        record = self.records.get(message.id)
        if record is None:
            record = self.records[message.id] = Record(message)
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
        if job_id in running or (record is not None and record.state in LIVE):
            return job_id
        return None

    def reusable(self, key: str, since: float, final_since: float) -> str | None:
        """The job with ``key`` if it succeeded after ``since``, or ended after ``final_since``."""
        record = self.records.get(self.keys.get(key, ""))
        if record is None or record.finished is None or not record.state.finished:
            return None
        if record.finished > final_since:
            return record.message.id
        if record.state is State.SUCCEEDED and record.finished > since:
            return record.message.id
        return None
