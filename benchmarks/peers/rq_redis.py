"""RQ on database 15: ``q.enqueue(fn, i)``, ``q.enqueue_many(...)`` (one pipeline).

Workers: ``rq worker bench --url URL --logging_level WARNING``, one OS
process each; RQ's default worker forks a work horse per job (its
isolation model), and those forks are part of each worker's cost. Results
are kept as RQ keeps them by default (500 s); the producer waits with
``job.latest_result(timeout=...)`` (a blocking read of the job's result
stream). Its drain runs on a tenth of the tasks (2,000): at a fork per
job, 20,000 would take minutes per round.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq import Queue

from benchmarks.peers import base

URL = os.environ["BENCH_REDIS_URL"]
connection = Redis.from_url(URL)
queue = Queue("bench", connection=connection)


class Driver(base.Driver):
    system = "RQ"
    batch_api = "q.enqueue_many([Queue.prepare_data(...), ...])"
    # A fork per job makes its drain ~100 tasks/s here: 20,000 would take
    # minutes per round, and the rate doesn't depend on the queue's length.
    drain_share = 0.1

    def enqueue(self, i: int) -> Any:
        return queue.enqueue(base.noop, i)

    def enqueue_batch(self, items: Sequence[int]) -> None:
        queue.enqueue_many([Queue.prepare_data(base.noop, (i,)) for i in items])

    def result(self, handle: Any, timeout: float) -> Any:
        result = handle.latest_result(timeout=math.ceil(timeout))  # whole seconds
        if result is None:
            raise TimeoutError(f"RQ: no result for {handle.id} within {timeout:g} s")
        return result.return_value

    def done_count(self) -> int:
        return int(queue.finished_job_registry.count)

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [str(base.BIN / "rq"), "worker", "bench", "--url", URL]
        return [[*command, "--logging_level", "WARNING"]] * processes

    def close(self) -> None:
        connection.close()
