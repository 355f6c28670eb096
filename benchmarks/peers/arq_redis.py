"""arq on database 15, from its own venv (``benchmarks/.arq-venv``: arq needs redis<6).

arq is asyncio: the producer is a coroutine, as an arq user's is. The
driver keeps one event loop and one pool (``await create_pool(settings)``)
for the measurement, and runs each step as one coroutine on it: the
enqueue loop is ``for i in items: await redis.enqueue_job("noop", i)``
(arq has no batch enqueue), a round trip is ``job = await
redis.enqueue_job("noop", i)`` then ``await job.result(timeout=...)``.
``job.result`` polls Redis for the result every 0.5 s, its default
``poll_delay``, and the worker polls its queue every 0.5 s, its default
``poll_delay`` too: there is no wake-up in arq, so a round trip at its
defaults takes about half a second (the scenario times fewer of them).

Workers: ``arq benchmarks.peers.arq_redis.WorkerSettings
--custom-log-dict benchmarks.peers.arq_redis.LOG_CONFIG``, one OS process
each (one asyncio loop). ``--custom-log-dict`` is the CLI's way to set the
level: without it arq logs every job at INFO (``-v``: DEBUG). Its settings
are arq's defaults but ``max_jobs``: 8 jobs at once per process (arq's
default is 10), as offload's 8 threads and Procrastinate's concurrency of 8.
Results are kept as arq keeps them by default (3,600 s).

A task is done when arq removes it from its queue (a sorted set), in the
same transaction that stores its result: sent minus ``ZCARD arq:queue``
(one O(1) command) is the done count, as for Dramatiq.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name
from redis import Redis

from benchmarks.peers import base

T = TypeVar("T")

URL = os.environ["BENCH_REDIS_URL"]
REDIS_SETTINGS = RedisSettings.from_dsn(URL)
MAX_JOBS = 8


async def noop(ctx: dict[str, Any], i: int) -> int:
    """The task, as arq wants it: a coroutine function whose first argument is the context."""
    return i


class WorkerSettings:
    """What ``arq benchmarks.peers.arq_redis.WorkerSettings`` runs: arq's defaults but max_jobs."""

    functions = [noop]  # noqa: RUF012 (arq reads these class attributes)
    redis_settings = REDIS_SETTINGS
    max_jobs = MAX_JOBS


# arq's own default_log_config (arq.logs), at WARNING instead of INFO.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "arq.standard": {
            "level": "WARNING",
            "class": "logging.StreamHandler",
            "formatter": "arq.standard",
        }
    },
    "formatters": {"arq.standard": {"format": "%(asctime)s: %(message)s", "datefmt": "%H:%M:%S"}},
    "loggers": {"arq": {"handlers": ["arq.standard"], "level": "WARNING"}},
}


class Driver(base.Driver):
    system = "arq"
    # Its workers poll every 0.5 s for at most 100 jobs each: a few hundred
    # tasks/s here; 20,000 would take a minute per round.
    drain_share = 0.1
    # A round trip takes ~0.5 s (two 0.5 s polls): 30 instead of 200.
    roundtrip_share = 0.15

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._pool = self._run(create_pool(REDIS_SETTINGS))
        self._redis = Redis.from_url(URL)  # for the polled done count only
        self._sent = 0

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def enqueue(self, i: int) -> Any:
        self._sent += 1
        return self._run(self._pool.enqueue_job("noop", i))

    def enqueue_each(self, items: Sequence[int]) -> None:
        self._run(self._enqueue_each(items))

    async def _enqueue_each(self, items: Sequence[int]) -> None:
        enqueue_job = self._pool.enqueue_job
        for i in items:
            await enqueue_job("noop", i)  # the job is dropped, as a fire-and-forget caller does
            self._sent += 1

    def result(self, handle: Any, timeout: float) -> Any:
        return self._run(handle.result(timeout=timeout))

    def roundtrip(self, i: int, timeout: float) -> Any:
        return self._run(self._roundtrip(i, timeout))

    async def _roundtrip(self, i: int, timeout: float) -> Any:
        job = await self._pool.enqueue_job("noop", i)
        self._sent += 1
        if job is None:  # only for a job id given twice, which we never do
            raise RuntimeError("arq refused the job")
        return await job.result(timeout=timeout)

    def done_count(self) -> int:
        return self._sent - int(self._redis.zcard(default_queue_name))

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [
            str(base.BIN / "arq"),
            f"{__name__}.WorkerSettings",
            "--custom-log-dict",
            f"{__name__}.LOG_CONFIG",
        ]
        return [command] * processes

    def close(self) -> None:
        self._run(self._pool.aclose())
        self._loop.close()
        self._redis.close()
