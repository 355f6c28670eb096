"""Round trip: enqueue one no-op task and wait for its result, one at a time.

One worker process runs (the same command as the drain, with 1 process).
A warm-up of round trips comes first, the first of them with a long
timeout, so the worker's start-up is not measured; then every round trip
is timed on its own, and the figures are their median and 99th percentile.
Each library waits for the result with its own blocking call (see the
driver modules); Procrastinate stores no results, so its producer polls the
job's status every 0.5 ms until it has ended.
"""

from __future__ import annotations

import os
import statistics
import time

from benchmarks.peers import servers
from benchmarks.scenarios.durable import driver_for, per_backend, worker_processes
from benchmarks.spec import Figures, Metric, Params

# The first warm-up call also waits for the worker to start (Celery: seconds).
STARTUP_TIMEOUT = 60.0


def run(backend: servers.Backend, system: str, params: Params) -> Figures:
    """Milliseconds from the enqueue call to the result in hand: p50 and p99."""
    timeout = float(params["wait_timeout"])
    # Driver modules read it at import (so do their workers): Huey turns on
    # notify_result (results waited for by BLPOP, not polled), Dramatiq its
    # Results middleware. Other scenarios leave both off, as the defaults are.
    os.environ["BENCH_ROUNDTRIP"] = "1"
    with driver_for(backend, system) as driver, worker_processes(driver, 1) as running:
        warmup, tasks = (
            _share(int(params[key]), driver.roundtrip_share) for key in ("warmup", "tasks")
        )
        for i in range(warmup):
            driver.roundtrip(i, STARTUP_TIMEOUT if i == 0 else timeout)
        running.check()
        samples = []
        for i in range(tasks):
            start = time.perf_counter()
            driver.roundtrip(i, timeout)
            samples.append((time.perf_counter() - start) * 1000)
    percentiles = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": statistics.median(samples), "p99_ms": percentiles[98]}


def _share(count: int, share: float) -> int:
    return max(2, round(count * share))  # quantiles need two samples


SCENARIOS = per_backend(
    "roundtrip",
    "Round trip, enqueue to result in hand, one at a time, 1 worker process",
    (
        Metric("p50_ms", "round trip p50", "ms"),
        Metric("p99_ms", "round trip p99", "ms"),
    ),
    run,
    full={"tasks": 200, "warmup": 30, "wait_timeout": 30.0},
    quick={"tasks": 30, "warmup": 5, "wait_timeout": 30.0},
    timeout=300.0,
    quick_timeout=120.0,
    notes={"postgres": "Procrastinate: no result store, its job status polled every 0.5 ms"},
)
