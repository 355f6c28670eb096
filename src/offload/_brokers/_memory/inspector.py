"""What the CLI, the dashboard and handles read of a memory broker's jobs.

``MemoryInspector`` is the broker's friend: it reads and changes the
broker's own structures (queues, leases, records) under the broker's lock,
so that the broker's hot path (enqueue, claim, ack) carries no inspection
code. Inspection scans: the memory broker serves one process, whose jobs
are few enough, and no index is kept for it on the hot path.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..._message import JobInfo, Message, State
from .._base import JobPage, Throughput, WorkerInfo
from .records import Queue, Record

if TYPE_CHECKING:
    from .broker import MemoryBroker


class MemoryInspector:
    """Inspection of one ``MemoryBroker`` (``broker.inspector``)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    def workers(self) -> list[WorkerInfo]:
        broker = self._broker
        with broker._lock:
            return broker.registry.live(broker._clock.now())

    def job(self, job_id: str) -> JobInfo | None:
        broker = self._broker
        with broker._lock:
            delivery = broker._inflight.get(job_id)
            if delivery is not None:
                return _info(delivery.message, State.RUNNING, broker._jobs)
            record = broker._jobs.get(job_id)
            if record is not None and record.state.finished:
                return _info(record.message, record.state, broker._jobs)
            for message, state in self._every_job():  # a queued job: scan
                if message.id == job_id:
                    return _info(message, state, broker._jobs)
        return None

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        # Only durable apps poll states, and they never use this broker in
        # production: one lookup per id is enough here.
        found = ((job_id, self.job(job_id)) for job_id in job_ids)
        return {job_id: job.state for job_id, job in found if job is not None}

    def counts(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        with self._broker._lock:
            for message, state in self._every_job():
                per_queue = counts.setdefault(message.queue, {})
                per_queue[state] = per_queue.get(state, 0) + 1
        return counts

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        records = self._broker._jobs
        with self._broker._lock:
            found = [
                (message, job_state)
                for message, job_state in self._every_job()
                if (state is None or job_state is state)
                and (queue is None or message.queue == queue)
            ]
            # Ids start with their creation time: newest first is highest id first.
            found.sort(key=lambda pair: pair[0].id, reverse=True)
            return [_info(message, job_state, records) for message, job_state in found[:limit]]

    def search_jobs(
        self,
        state: State | None = None,
        queue: str | None = None,
        text: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        # A scan, as every listing here: ids start with their creation time,
        # so the cursor is the last id shown and "older" is "a lower id".
        before = None if after is None else _cursor_id(after)
        records = self._broker._jobs
        with self._broker._lock:
            found = [
                (message, job_state)
                for message, job_state in self._every_job()
                if (state is None or job_state is state)
                and (queue is None or message.queue == queue)
                and (before is None or message.id < before)
            ]
            if text:
                found = _matching(found, text)
            found.sort(key=lambda pair: pair[0].id, reverse=True)
            page = [_info(message, job_state, records) for message, job_state in found[:limit]]
        return JobPage(page, _CURSOR + page[-1].id if len(found) > limit else None)

    def oldest_ready(self) -> dict[str, float]:
        broker = self._broker
        oldest: dict[str, float] = {}
        with broker._lock:
            now = broker._clock.now()
            ready = [(m.eta or m.created, m.queue) for q in broker._queues.values() for m in q]
            ready += [(eta, m.queue) for eta, _, m in broker._delayed if eta <= now]
            for due, queue in ready:
                if due < oldest.get(queue, math.inf):
                    oldest[queue] = min(due, now)
        return oldest

    def throughput(self, since: float) -> list[Throughput]:
        # Read from the finished jobs themselves (kept until their TTL passes).
        per_minute: dict[tuple[float, str], list[int]] = {}
        with self._broker._lock:
            for record in self._broker._jobs.values():
                done = record.finished
                if done is None or done < since or record.state not in _COUNTED:
                    continue
                counts = per_minute.setdefault((done // 60 * 60, record.message.queue), [0, 0])
                counts[record.state is State.FAILED] += 1
        return [Throughput(m, q, s, f) for (m, q), (s, f) in sorted(per_minute.items())]

    def cancel(self, job_id: str) -> bool:
        broker = self._broker
        with broker._lock:
            message = _take_waiting(broker._queues, broker._delayed, job_id)
            if message is None:
                if job_id not in broker._inflight:
                    return False
                broker.cancel_requested.add(job_id)  # its worker hears it at its next renewal
                return True
            record = broker._jobs.get(job_id)
            last_error = None if record is None else record.error  # kept: no attempt ended
            broker._finish(message, State.CANCELLED, None, last_error)
            return True

    def retry(self, job_id: str) -> bool:
        broker = self._broker
        with broker._lock:
            record = broker._jobs.get(job_id)
            if record is None or record.state not in (State.FAILED, State.CANCELLED):
                return False
            message = record.message
            if message.key is not None and broker._ledger.holder(message.key, broker._inflight):
                return False  # another job holds the key now: two would run
            del broker._jobs[job_id]
            message.attempt, message.eta = 0, None
            broker._store(message)
            if broker._waiting:
                broker._wakeup.notify_all()
            return True

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        if not state.finished:
            raise ValueError(
                f"purge deletes finished jobs (succeeded, failed, cancelled), not {state}"
            )
        broker = self._broker
        with broker._lock:
            doomed = [
                record
                for record in broker._jobs.values()
                if record.state is state and (queue is None or record.message.queue == queue)
            ]
            for record in doomed:
                broker._ledger.drop(record.message)
            return len(doomed)

    def prune(self) -> int:
        broker = self._broker
        with broker._lock:
            return broker._ledger.prune(broker._clock.now())

    def _every_job(self) -> Iterator[tuple[Message, State]]:
        """Every job with its state: a scan (the broker's lock held)."""
        broker = self._broker
        for delivery in list(broker._inflight.values()):  # a snapshot: acks may pop unlocked
            yield delivery.message, State.RUNNING
        waiting = itertools.chain(
            itertools.chain.from_iterable(broker._queues.values()),
            (entry[2] for entry in broker._delayed),
        )
        for message in waiting:
            record = broker._jobs.get(message.id)
            yield message, State.QUEUED if record is None else record.state
        for record in broker._jobs.values():
            if record.state.finished:
                yield record.message, record.state


def _take_waiting(
    queues: dict[str, Queue], delayed: list[tuple[float, int, Message]], job_id: str
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


_CURSOR = "@"
_COUNTED = (State.SUCCEEDED, State.FAILED)


def _cursor_id(cursor: str) -> str:
    if not cursor.startswith(_CURSOR):
        raise ValueError(f"{cursor!r} is not a page cursor of this broker: start from page one")
    return cursor[len(_CURSOR) :]


def _matching(found: list[tuple[Message, State]], text: str) -> list[tuple[Message, State]]:
    """The job with id ``text``; else those with key ``text``; else those of tasks it starts."""
    tests: list[Callable[[Message], bool]] = [
        lambda m: m.id == text,
        lambda m: m.key == text,
        lambda m: m.task.startswith(text),
    ]
    for test in tests:
        matched = [pair for pair in found if test(pair[0])]
        if matched:
            return matched
    return []


def _info(message: Message, state: State, records: dict[str, Record]) -> JobInfo:
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
