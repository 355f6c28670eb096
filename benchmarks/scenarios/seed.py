"""The seed blog's experiment: 100 sleeping tasks on a pool wider than 100.

With 110 workers every task has a thread, so the wall time's floor is one
task's duration (1.00 s); what is above it is the system's cost of starting
threads and handing out 100 calls.
"""

from __future__ import annotations

import time

from benchmarks.spec import Figures, Metric, Params, Scenario
from benchmarks.systems import IN_PROCESS, bind, versions


def sleep(seconds: float) -> None:
    """The blog's task: ``time.sleep``, standing for blocking I/O."""
    time.sleep(seconds)


def run(system: str, params: Params) -> Figures:
    """Wall seconds from the first call to the last result in hand."""
    tasks, seconds = int(params["tasks"]), float(params["seconds"])
    # As in the blog: the pool is configured first; its threads start with
    # the calls, inside the timed span, for every system alike.
    bound = bind(system, sleep, workers=int(params["workers"]))
    try:
        start = time.perf_counter()
        handles = [bound.call(seconds) for _ in range(tasks)]
        for handle in handles:
            handle.result(float(params["wait_timeout"]))
        wall = time.perf_counter() - start
    finally:
        bound.close()
    return {"wall_s": wall}


SCENARIO = Scenario(
    name="seed",
    title="The seed: 100 sleeping tasks, 110 workers (floor: one task's sleep)",
    metrics=(Metric("wall_s", "wall time, first call to last result", "s"),),
    systems=IN_PROCESS,
    tags=("in-process",),
    full={"tasks": 100, "seconds": 1.0, "workers": 110, "wait_timeout": 30.0},
    quick={"tasks": 100, "seconds": 0.2, "workers": 110, "wait_timeout": 30.0},
    run=run,
    versions=versions,
    timeout=120.0,
)
