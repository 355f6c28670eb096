"""Celery with Redis as broker and result backend (database 15), its defaults otherwise.

``noop.delay(i)``; Celery has no batch enqueue (a ``group`` sends one
message per task), so no batch figure. The producer waits with
``result.get(timeout=...)`` (the Redis backend's pub/sub). Workers:
``celery -A benchmarks.peers.celery_redis worker --pool prefork
--concurrency N --loglevel WARNING``: N pool processes run the tasks; the
parent process that feeds them is overhead on top (3 processes for N=2).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from redis import Redis

from benchmarks.peers import base

URL = os.environ["BENCH_REDIS_URL"]
app = Celery("bench", broker=URL, backend=URL)
# Only silences a deprecation warning at worker start; behaviour unchanged.
app.conf.broker_connection_retry_on_startup = True
noop = app.task(name="noop")(base.noop)

# One server-side count of the backend's result keys: no key crosses the wire.
_COUNT_RESULTS = "return #redis.call('KEYS', 'celery-task-meta-*')"


class Driver(base.Driver):
    system = "Celery"

    def __init__(self) -> None:
        self._redis = Redis.from_url(URL)

    def enqueue(self, i: int) -> Any:
        return noop.delay(i)

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    def done_count(self) -> int:
        return int(self._redis.eval(_COUNT_RESULTS, 0))

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [
            [
                str(base.BIN / "celery"),
                "-A",
                __name__,
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(processes),
                "--loglevel",
                "WARNING",
            ]
        ]

    def close(self) -> None:
        self._redis.close()
        app.close()
