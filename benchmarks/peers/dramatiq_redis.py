"""Dramatiq's ``RedisBroker`` on database 15.

``noop.send(i)``; no batch enqueue (``group`` sends one message per task).
Dramatiq stores no results unless asked: the round trip
(``BENCH_ROUNDTRIP=1``) adds its ``Results`` middleware with the Redis
backend and ``store_results=True``, and waits with
``message.get_result(block=True, timeout=...)``. Workers: ``dramatiq
benchmarks.peers.dramatiq_redis --processes N --threads 8
--skip-logging``: N worker processes of 8 threads (its defaults but N),
under a master process that is overhead on top; ``--skip-logging`` leaves
Python's default, WARNING, as the level (the CLI has no level option).
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from benchmarks.peers import base

URL = os.environ["BENCH_REDIS_URL"]
WITH_RESULTS = os.environ.get("BENCH_ROUNDTRIP") == "1"
broker = RedisBroker(url=URL)  # type: ignore[no-untyped-call, unused-ignore]
if WITH_RESULTS:
    backend = RedisBackend(url=URL)  # type: ignore[no-untyped-call, unused-ignore]
    broker.add_middleware(Results(backend=backend))  # type: ignore[no-untyped-call, unused-ignore]
dramatiq.set_broker(broker)
# store_results is an option of the Results middleware: only given with it.
options: dict[str, Any] = {"store_results": True} if WITH_RESULTS else {}
noop = dramatiq.actor(actor_name="noop", **options)(base.noop)


class Driver(base.Driver):
    system = "Dramatiq"

    def __init__(self) -> None:
        self._sent = 0

    def enqueue(self, i: int) -> Any:
        self._sent += 1
        return noop.send(i)

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.get_result(block=True, timeout=int(timeout * 1000))  # milliseconds

    def done_count(self) -> int:
        # Dramatiq acks a message by deleting it: what is sent and no longer
        # in the queue (waiting or unacked) is done. `join` reads the same count.
        return self._sent - int(broker.do_qsize(noop.queue_name))

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [
            [
                str(base.BIN / "dramatiq"),
                __name__,
                "--processes",
                str(processes),
                "--threads",
                "8",
                "--skip-logging",
            ]
        ]

    def close(self) -> None:
        broker.close()
