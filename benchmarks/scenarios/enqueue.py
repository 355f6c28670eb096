"""Enqueue throughput: no-op tasks stored, no worker running.

First one call per task (``task(i)``, ``q.enqueue(fn, i)``, ``defer``),
then, for the libraries that have one, the same number in one call of the
batch API, into the same store (after the first pass: both kinds of
system alike). A warm-up of a few hundred calls comes first, untimed, so
connection set-up and first-call caches are not counted.
"""

from __future__ import annotations

import time

from benchmarks.peers import servers
from benchmarks.scenarios.durable import driver_for, per_backend
from benchmarks.spec import Figures, Metric, Params


def run(backend: servers.Backend, system: str, params: Params) -> Figures:
    """Tasks per second, one call at a time and (if the library has it) batched."""
    tasks = int(params["tasks"])
    with driver_for(backend, system) as driver:
        driver.enqueue_each(range(int(params["warmup"])))
        start = time.perf_counter()
        # One call per task, each handle dropped, as a fire-and-forget caller does.
        driver.enqueue_each(range(tasks))
        figures = {"one_per_s": tasks / (time.perf_counter() - start)}
        if driver.batch_api is not None:
            start = time.perf_counter()
            driver.enqueue_batch(range(tasks))
            figures["batch_per_s"] = tasks / (time.perf_counter() - start)
    return figures


SCENARIOS = per_backend(
    "enqueue",
    "Enqueue throughput, no-op tasks, no worker",
    (
        Metric("one_per_s", "enqueue, one call per task", "tasks/s", better="higher"),
        Metric("batch_per_s", "enqueue, one batch call", "tasks/s", better="higher"),
    ),
    run,
    full={"tasks": 20_000, "warmup": 200},
    quick={"tasks": 1_000, "warmup": 100},
    timeout=240.0,
    quick_timeout=60.0,
)
