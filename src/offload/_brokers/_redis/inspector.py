"""What the CLI, the dashboard and a producer's handles read of a Redis broker's jobs.

``RedisInspector`` shares its broker's connections, scripts and retries
(``broker.inspector``): reads go through redis-py pipelines, the changes
(cancel, retry, purge, prune) are scripts like every other state change.

A corrupt job never makes inspection raise: see ``rows.job_info``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, cast

import redis

from ..._clock import Clock
from ..._message import Delivery, JobInfo, Progress, State
from .._base import JobPage, Throughput, WorkerInfo
from . import lag, rows, search
from .link import Arg, Link
from .scripts import Scripts
from .workers import live_workers

_T = TypeVar("_T")

_HISTORY_MINUTES = 1440
"""Minutes of throughput the scripts keep (``count_finished``: a day)."""


class Call(Protocol):
    """The broker's way to run an operation, retrying a lost connection (``RedisBroker._call``)."""

    def __call__(self, operation: Callable[[bool], _T]) -> _T: ...


class RedisInspector:
    """The jobs of one namespace, as they are stored; made by ``RedisBroker``.

    ``call`` runs each operation as the broker does (tries, then
    ``BrokerUnavailable``), so an outage is logged once for both.
    """

    def __init__(
        self,
        *,
        prefix: str,
        clock: Clock,
        result_ttl: float,
        batch: int,
        client: redis.Redis,
        link: Link,
        scripts: Scripts,
        call: Call,
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._result_ttl = result_ttl
        self._batch = batch  # jobs a purge or prune script deletes at a time
        self._client = client
        self._link = link
        self._scripts = scripts
        self._call = call
        self._unread_tokens = itertools.count(1)

    def __repr__(self) -> str:
        return f"RedisInspector(prefix={self._prefix!r})"

    def job(self, job_id: str) -> JobInfo | None:
        key = f"{self._prefix}job:{job_id}"
        try:
            reply = self._call(lambda _: self._link.call("HGETALL", key))
        except redis.ResponseError as error:
            if not str(error).startswith("WRONGTYPE"):
                raise
            return rows.not_a_hash(job_id)
        if not isinstance(reply, dict):  # RESP2: a flat list of names and values
            reply = dict(zip(reply[::2], reply[1::2], strict=True))
        fields = cast("dict[bytes, bytes]", reply)
        return rows.job_info(job_id, fields) if fields else None

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        def run(_: bool) -> dict[str, State]:
            states: dict[str, State] = {}
            for start in range(0, len(job_ids), 1000):
                chunk = job_ids[start : start + 1000]
                pipe = self._client.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hget(f"{self._prefix}job:{job_id}", "s")
                for job_id, state in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
                    if isinstance(state, bytes):
                        states[job_id] = rows.job_state(state)
                    elif isinstance(state, redis.ResponseError):  # the key holds no hash
                        states[job_id] = State.FAILED
            return states

        return self._call(run)

    def change_token(self) -> int:
        """Changes whenever a job finishes or is deleted: nothing to settle if it did not."""
        value = self._call(lambda _: self._client.get(f"{self._prefix}fin")) or 0
        try:
            return int(value)
        except ValueError:  # overwritten (the scripts start it again): a change each time
            return -next(self._unread_tokens)

    def workers(self) -> list[WorkerInfo]:
        now = self._clock.now()
        return self._call(lambda _: live_workers(self._client, self._prefix, now))

    def counts(self) -> dict[str, dict[State, int]]:
        def run(_: bool) -> dict[str, dict[State, int]]:
            queues = sorted(self._queue_names())
            pipe = self._client.pipeline(transaction=False)
            pairs = [(queue, state) for queue in queues for state in State]
            for queue, state in pairs:
                pipe.zcard(self._key(f"st:{state.value}:", queue))
            counts: dict[str, dict[State, int]] = {}
            for (queue, state), count in zip(pairs, pipe.execute(), strict=True):
                if count:
                    counts.setdefault(_shown(queue), {})[state] = int(count)
            return counts

        return self._call(run)

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        def run(_: bool) -> list[JobInfo]:
            queues = [queue.encode()] if queue is not None else self._queue_names()
            indexes = [
                self._key(f"st:{s.value}:", q)
                for q in queues
                for s in (State if state is None else (state,))
            ]
            pipe = self._client.pipeline(transaction=False)
            for index in indexes:
                pipe.zrevrange(index, 0, limit - 1, withscores=True)
            # Each index's newest, merged: newest first across them all.
            found = sorted(
                (pair for pairs in pipe.execute() for pair in pairs), key=lambda p: -p[1]
            )
            ids = list(dict.fromkeys(member for member, _ in found))[:limit]
            for job_id in ids:
                pipe.hgetall(self._key("job:", job_id))
            jobs = []
            for job_id, fields in zip(ids, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(fields, redis.ResponseError):  # the key holds no hash
                    jobs.append(rows.not_a_hash(_shown(job_id)))
                elif fields:  # else gone since it was listed
                    jobs.append(rows.job_info(_shown(job_id), fields))
            return jobs

        return self._call(run)

    def record_progress(self, delivery: Delivery, progress: Progress) -> bool:
        text = json.dumps(list(progress), ensure_ascii=False)
        args: list[Arg] = [self._prefix, delivery.message.id, delivery.token, text]
        return bool(self._call(lambda _: self._scripts.progress(args=args)))

    def record_step(self, delivery: Delivery, name: str, result: bytes) -> bool:
        args: list[Arg] = [self._prefix, delivery.message.id, delivery.token, name, result]
        return bool(self._call(lambda _: self._scripts.step(args=args)))

    def step_result(self, job_id: str, name: str) -> bytes | None:
        key = f"{self._prefix}steps:{job_id}"
        try:
            value = self._call(lambda _: self._link.call("HGET", key, name))
        except redis.ResponseError:  # the key holds no hash: no step kept
            return None
        return value if isinstance(value, bytes) else None

    def progress(self, job_id: str) -> Progress | None:
        key = f"{self._prefix}job:{job_id}"
        try:
            text = self._call(lambda _: self._link.call("HGET", key, "pg"))
        except redis.ResponseError:  # the key holds no hash: no progress to read
            return None
        try:
            fields = json.loads(text) if isinstance(text, bytes) else None
        except ValueError:  # written by something else: no record, not an error
            return None
        if not isinstance(fields, list) or len(fields) != len(Progress._fields):
            return None
        return Progress.stored(*fields)

    def search_jobs(
        self,
        state: State | None = None,
        queue: str | None = None,
        text: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        before = None if after is None else search.cursor_score(after)

        def run(_: bool) -> JobPage:
            queues = [queue.encode()] if queue is not None else self._queue_names()
            states = tuple(State) if state is None else (state,)
            indexes = [self._key(f"st:{s.value}:", q) for q in queues for s in states]
            finder = search.Search(self._client, self._prefix, indexes, search.wanted(state, queue))
            found = finder.by_id_or_key(text) if text and before is None else []
            return JobPage(found, None) if found else finder.page(before, limit, text)

        return self._call(run)

    def throughput(self, since: float) -> list[Throughput]:
        now = self._clock.now()
        first = int(since // 60) * 60 + (0 if since % 60 == 0 else 60)
        minutes = range(first, int(now // 60) * 60 + 1, 60)[-_HISTORY_MINUTES:]

        def run(_: bool) -> list[Throughput]:
            pipe = self._client.pipeline(transaction=False)
            for minute in minutes:
                pipe.hgetall(f"{self._prefix}stats:{minute}")
            found = []
            for minute, fields in zip(minutes, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(fields, dict):
                    found += search.minute_rows(float(minute), fields)
            return found

        return self._call(run)

    def oldest_ready(self) -> dict[str, float]:
        now = self._clock.now()
        return self._call(
            lambda _: lag.oldest_ready(self._client, self._prefix, self._queue_names(), now)
        )

    def cancel(self, job_id: str) -> bool:
        args = [self._prefix, job_id, repr(self._clock.now()), repr(self._result_ttl)]
        return bool(self._call(lambda _: self._scripts.cancel(args=args)))

    def retry(self, job_id: str) -> bool:
        args = [self._prefix, job_id, repr(self._clock.now())]
        return bool(self._call(lambda _: self._scripts.retry(args=args)))

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        if not state.finished:
            raise ValueError(
                f"purge deletes finished jobs (succeeded, failed, cancelled), not {state}"
            )
        args: list[Arg] = [self._prefix, state.value, self._batch, queue or ""]
        return self._repeat(lambda: int(self._scripts.purge(args=args)))

    def prune(self) -> int:
        args: list[Arg] = [self._prefix, repr(self._clock.now()), self._batch]
        return self._repeat(lambda: int(self._scripts.prune(args=args)))

    def _queue_names(self) -> list[bytes]:
        """As stored: a name that is not UTF-8 (a corrupt job retried) still finds its keys."""
        return list(cast("set[bytes]", self._client.smembers(f"{self._prefix}queues")))

    def _key(self, kind: str, name: bytes) -> bytes:
        return f"{self._prefix}{kind}".encode() + name

    def _repeat(self, step: Callable[[], int]) -> int:
        """Run a deleting script in batches until a batch falls short; how many in all."""
        total = 0
        while (deleted := self._call(lambda _: step())) > 0:
            total += deleted
        return total


def _shown(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")
