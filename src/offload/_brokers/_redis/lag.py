"""How long each queue's oldest claimable job has waited, in a Redis broker (``QueueLag``).

Claimable jobs are in three places: ``ready:{queue}`` (scored by minus the
priority; within a priority, members start with the due time in
microseconds, so each priority's first member is its oldest), ``delayed``
(by due time: those due now wait for the next claim to promote them) and
``running`` (by lease end: a lapsed lease is claimable). Reads only: the
first member of each priority, and at most ``LIMIT`` due delayed or lapsed
jobs, whose queues are read from their hashes.
"""

from __future__ import annotations

from typing import cast

import redis

LIMIT = 200
"""Due delayed jobs and lapsed leases looked at, each (the oldest first)."""
PRIORITIES = 32
"""Distinct priorities of one queue looked at (each costs one read)."""


def oldest_ready(
    client: redis.Redis, prefix: str, queues: list[bytes], now: float
) -> dict[str, float]:
    """Per queue, when its oldest claimable job became claimable (``QueueLag``)."""
    oldest: dict[str, float] = {}
    for queue in queues:
        due = _oldest_of_queue(client, prefix.encode() + b"ready:" + queue)
        if due is not None:
            _keep(oldest, queue.decode("utf-8", "backslashreplace"), due)
    for name in ("delayed", "running"):
        key = f"{prefix}{name}"
        pairs = cast(
            "list[tuple[bytes, float]]",
            client.zrangebyscore(key, "-inf", now, start=0, num=LIMIT, withscores=True),
        )
        pipe = client.pipeline(transaction=False)
        for job_id, _ in pairs:
            pipe.hget(prefix.encode() + b"job:" + job_id, "q")
        for (_, due), queue in zip(pairs, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(queue, bytes):
                _keep(oldest, queue.decode("utf-8", "backslashreplace"), float(due))
    return oldest


def _oldest_of_queue(client: redis.Redis, key: bytes) -> float | None:
    """The earliest due time among the first member of each priority (microseconds in it)."""
    best: float | None = None
    lower = "-inf"  # scores are minus the priority: the highest priority first
    for _ in range(PRIORITIES):
        first = cast(
            "list[tuple[bytes, float]]",
            client.zrangebyscore(key, lower, "+inf", start=0, num=1, withscores=True),
        )
        if not first:
            break
        member, score = first[0]
        due = _due(member)
        if due is not None and (best is None or due < best):
            best = due
        lower = f"({score!r}"
    return best


def _due(member: bytes) -> float | None:
    head = member[:16]
    return int(head) / 1e6 if head.isdigit() else None


def _keep(oldest: dict[str, float], queue: str, due: float) -> None:
    if due < oldest.get(queue, float("inf")):
        oldest[queue] = due
