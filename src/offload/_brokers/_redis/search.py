"""Paging and search of a Redis broker's jobs (``JobSearch``), newest first, by cursor.

Each queue and state has a sorted set of its job ids, scored by the job's
sequence number (``st:{state}:{queue}``). A page asks each set for the
members below the cursor (``ZREVRANGEBYSCORE``, no offset), merges them
newest first and reads their hashes: the cost of a page does not grow with
the number of jobs.

Text: an id is one hash read; a key of a live job is one lookup in the
``keys`` hash; a task name has no index, so the sets are walked a chunk at a
time and the hashes filtered, for at most ``SCAN_BUDGET`` jobs a page. A
page cut short by the budget still has a cursor: the next one goes on from
where this one stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis

from ..._message import JobInfo, State
from .._base import JobPage, Throughput
from . import rows

SCAN_BUDGET = 5000
"""Jobs read, at most, for one page of a search by task name."""
_CHUNK = 500


def cursor_score(cursor: str) -> float:
    """The score a page cursor holds; ``ValueError`` for anything else."""
    try:
        score = float(cursor)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise ValueError(f"{cursor!r} is not a page cursor of this broker: start from page one")
    return score


class Search:
    """One search: the sets to walk and the filter, over one client."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        indexes: Sequence[bytes],
        wanted: Callable[[JobInfo], bool],
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._indexes = indexes
        self._wanted = wanted

    def by_id_or_key(self, text: str) -> list[JobInfo]:
        """The job whose id is ``text``, else the live job holding key ``text``."""
        job = [info for info in self._read([text.encode()]) if info is not None]
        if not job:
            holder = self._client.hget(f"{self._prefix}keys", text)
            held = self._read([cast("bytes", holder)]) if holder else []
            job = [info for info in held if info is not None]
        return [info for info in job if self._wanted(info)]

    def page(self, before: float | None, limit: int, text: str | None) -> JobPage:
        upper = "+inf" if before is None else f"({before!r}"
        found: list[tuple[JobInfo, float]] = []
        chunk = _CHUNK if text else limit + 1
        scanned = 0
        while True:
            members = self._below(upper, chunk)
            for info, (_, score) in zip(self._read([m for m, _ in members]), members, strict=True):
                if info is None or not self._wanted(info):
                    continue  # gone since it was listed, or another state or queue
                if not text or info.task.startswith(text):
                    found.append((info, score))
            if len(found) > limit:
                return JobPage([info for info, _ in found[:limit]], repr(found[limit - 1][1]))
            scanned += len(members)
            if len(members) < chunk:
                return JobPage([info for info, _ in found], None)
            upper = f"({members[-1][1]!r}"
            if scanned >= SCAN_BUDGET:  # go on from here next page
                return JobPage([info for info, _ in found], repr(members[-1][1]))

    def _below(self, upper: str, count: int) -> list[tuple[bytes, float]]:
        """The ``count`` newest members of all the sets scored below ``upper``."""
        pipe = self._client.pipeline(transaction=False)
        for index in self._indexes:
            pipe.zrevrangebyscore(index, upper, "-inf", start=0, num=count, withscores=True)
        merged = [pair for pairs in pipe.execute() for pair in pairs]
        merged.sort(key=lambda pair: -pair[1])
        return merged[:count]

    def _read(self, ids: Sequence[bytes]) -> list[JobInfo | None]:
        """The jobs of ``ids`` in order, ``None`` for one gone (one pipelined read)."""
        pipe = self._client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._prefix.encode() + b"job:" + job_id)
        jobs: list[JobInfo | None] = []
        for job_id, fields in zip(ids, pipe.execute(raise_on_error=False), strict=True):
            shown = job_id.decode("utf-8", "backslashreplace")
            if isinstance(fields, redis.ResponseError):
                jobs.append(rows.not_a_hash(shown))
            else:
                info = rows.job_info(shown, fields) if fields else None
                jobs.append(info)
        return jobs


def wanted(state: State | None, queue: str | None) -> Callable[[JobInfo], bool]:
    def test(job: Any) -> bool:
        return (state is None or job.state is state) and (queue is None or job.queue == queue)

    return test


def minute_rows(minute: float, fields: dict[bytes, bytes]) -> list[Throughput]:
    """One ``stats:{minute}`` hash (``{state}:{queue}`` -> count) as rows, by queue.

    A field that is not what the scripts write is left out: the charts
    never fail because of one.
    """
    by_queue: dict[str, list[int]] = {}
    for field, value in fields.items():
        state, _, queue = field.decode("utf-8", "backslashreplace").partition(":")
        if state not in ("succeeded", "failed") or not value.isdigit():
            continue
        counts = by_queue.setdefault(queue, [0, 0])
        counts[state == "failed"] += int(value)
    return [Throughput(minute, q, s, f) for q, (s, f) in sorted(by_queue.items())]
