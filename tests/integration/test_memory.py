"""Memory: calls whose handles are dropped leave nothing behind (not a timing test)."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import Callable
from typing import Any

import offload
from helpers import WAIT

MB = 1024 * 1024


def noop(x: int) -> None:
    return None


def growth(app: offload.App, call: Callable[[int], Any], warmup: int, calls: int) -> int:
    """Bytes still traced after ``calls`` dropped calls, over a warmed-up baseline."""
    tracemalloc.start()
    try:
        for i in range(warmup):  # threads, queues and caches at their size
            call(i)
        assert app.join(timeout=WAIT * 6)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        for i in range(calls):
            call(i)
        assert app.join(timeout=WAIT * 12)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - baseline


def test_dropped_handles_leave_no_growth(app: offload.App) -> None:
    grown = growth(app, app.task(noop), warmup=5_000, calls=50_000)
    assert app.pending == 0
    assert grown < 2 * MB, f"memory grew by {grown / MB:.1f} MB over 50,000 dropped calls"


def test_dropped_failing_handles_leave_no_growth(app: offload.App) -> None:
    @app.task
    def fails(x: int) -> None:
        raise ValueError(x)

    # Each dropped failure is logged ("never retrieved"); keep the log quiet.
    # A level, not ``disabled``: the modules log under children of "offload".
    logger = logging.getLogger("offload")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        grown = growth(app, fails, warmup=2_000, calls=20_000)
    finally:
        logger.setLevel(level)
    assert grown < 2 * MB, f"memory grew by {grown / MB:.1f} MB over 20,000 dropped failures"
