"""The seed blog's notebook cell, verbatim: 100 one-second tasks, then a busy loop.

The blog ran::

    bg.n = 110
    f_list = [bg_work() for _ in range(100)]
    while not all([f.done() for f in f_list]):
        pass

The loop holds the GIL: every hand-off from the caller to a pool thread then
waits for a switch interval (5 ms), so a system that hands calls over in
more steps than ThreadPoolExecutor (which gives each call to a thread it
starts at submit time) pays for it here, and ``result()`` (the ``seed`` row)
hides it. Two ways for offload, each in a fresh process: the drop-in
(``import offload.background as bg``) and ``@app.task`` on
``App(threads=110)``. The peers have one way each, run afresh for both rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from benchmarks.spec import Figures, Metric, Params, Part, Scenario
from benchmarks.systems import BACKGROUND, IN_PROCESS, OFFLOAD, versions

SECONDS = 1.0


def work() -> int:
    """The blog's ``bg_work``: ``time.sleep``, standing for blocking I/O."""
    time.sleep(SECONDS)
    return 1


def run(system: str, params: Params) -> Figures:
    """Wall seconds of the cell: from the first call until the busy loop sees all done."""
    global SECONDS  # noqa: PLW0603 - the task reads it, as the blog's read a literal
    SECONDS = float(params["seconds"])
    way = str(params["way"])
    bg_work, close = _submitter(system, way, int(params["workers"]))
    try:
        start = time.perf_counter()
        f_list = [bg_work() for _ in range(int(params["tasks"]))]
        while not all([f.done() for f in f_list]):
            pass
        wall = time.perf_counter() - start
    finally:
        close()
    return {f"wall_{way}_s": wall}


def _submitter(
    system: str, way: str, workers: int
) -> tuple[Callable[[], Future[Any]], Callable[[], None]]:
    if system == OFFLOAD and way == "dropin":
        import offload.background as bg

        bg_work = bg.task(work)
        bg.n = workers
        return bg_work, lambda: None
    if system == OFFLOAD:
        import offload

        app = offload.App(threads=workers)
        return app.task(work), app.shutdown
    if system == BACKGROUND:
        import background as bg  # type: ignore[import-not-found, unused-ignore]

        bg.n = workers
        peer_work: Callable[[], Future[Any]] = bg.task(work)
        return peer_work, lambda: None
    pool = ThreadPoolExecutor(max_workers=workers)
    return (lambda: pool.submit(work)), pool.shutdown


def parts(params: Params) -> tuple[Part, ...]:
    return (Part("dropin", {"way": "dropin"}), Part("app", {"way": "app"}))


SCENARIO = Scenario(
    name="seed-cell",
    title="The seed's notebook cell, verbatim: 100 sleep(1) calls, n = 110, busy loop until done",
    metrics=(
        Metric("wall_dropin_s", "wall time, offload.background (drop-in)", "s"),
        Metric("wall_app_s", "wall time, @app.task on App(threads=110)", "s"),
    ),
    systems=IN_PROCESS,
    tags=("in-process",),
    full={"tasks": 100, "seconds": 1.0, "workers": 110},
    quick={"tasks": 100, "seconds": 0.2, "workers": 110},
    run=run,
    versions=versions,
    timeout=120.0,
    parts=parts,
)
