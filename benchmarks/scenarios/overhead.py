"""Per-task overhead of submit + result for no-op tasks, two ways.

"Submit all, then wait all" starts every call, then collects every result:
the cost of the queue and the hand-off when the pool is saturated. "One at a
time" starts a call and waits for its result before the next: the latency
of one round trip through the pool, thread wake-ups included.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.spec import Figures, Metric, Params, Scenario
from benchmarks.systems import IN_PROCESS, Bound, bind, versions


def noop(x: Any) -> None:
    """The task: nothing, so what is measured is the system's own work."""


def run(system: str, params: Params) -> Figures:
    """Measure both ways in this process; µs per task."""
    tasks, timeout = int(params["tasks"]), float(params["wait_timeout"])
    bound = bind(system, noop)
    try:
        # Warm-up: pools start their threads lazily; don't time thread creation.
        submit_all_then_wait_all(bound, int(params["warmup"]), timeout)
        submit_all = submit_all_then_wait_all(bound, tasks, timeout)
        one_by_one = one_at_a_time(bound, tasks, timeout)
    finally:
        bound.close()
    return {"submit_all_us": submit_all / tasks * 1e6, "one_at_a_time_us": one_by_one / tasks * 1e6}


def submit_all_then_wait_all(bound: Bound, tasks: int, timeout: float) -> float:
    """Seconds to start ``tasks`` calls, then get every result."""
    call = bound.call  # a local: the loop measures the system, not attribute lookups
    start = time.perf_counter()
    handles = [call(i) for i in range(tasks)]
    for handle in handles:
        handle.result(timeout)
    return time.perf_counter() - start


def one_at_a_time(bound: Bound, tasks: int, timeout: float) -> float:
    """Seconds to start a call and wait for its result, ``tasks`` times over."""
    call = bound.call
    start = time.perf_counter()
    for i in range(tasks):
        call(i).result(timeout)
    return time.perf_counter() - start


SCENARIO = Scenario(
    name="overhead",
    title="Per-task overhead, no-op tasks, default pool",
    metrics=(
        Metric("submit_all_us", "submit all, then wait all", "µs/task"),
        Metric("one_at_a_time_us", "one at a time", "µs/task"),
    ),
    systems=IN_PROCESS,
    tags=("in-process",),
    full={"tasks": 100_000, "warmup": 1_000, "wait_timeout": 60.0},
    quick={"tasks": 10_000, "warmup": 1_000, "wait_timeout": 30.0},
    run=run,
    versions=versions,
    timeout=300.0,
)
