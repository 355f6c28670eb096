"""Memory: calls whose handles are dropped leave nothing behind (not a timing test)."""

from __future__ import annotations

import gc
import logging
import tracemalloc

import offload
from helpers import WAIT

MB = 1024 * 1024


def noop(x: int) -> None:
    return None


def test_dropped_handles_leave_no_growth(app: offload.App) -> None:
    task = app.task(noop)
    tracemalloc.start()
    try:
        for i in range(5_000):  # warm-up: threads, queues and caches at their size
            task(i)
        assert app.join(timeout=WAIT * 6)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        for i in range(50_000):
            task(i)
        assert app.join(timeout=WAIT * 12)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert app.pending == 0
    growth = after - baseline
    assert growth < 2 * MB, f"memory grew by {growth / MB:.1f} MB over 50,000 dropped calls"


def test_dropped_failing_handles_leave_no_growth(app: offload.App) -> None:
    @app.task
    def fails(x: int) -> None:
        raise ValueError(x)

    # Each dropped failure is logged ("never retrieved"); keep the log quiet.
    logger = logging.getLogger("offload")
    disabled, logger.disabled = logger.disabled, True
    tracemalloc.start()
    try:
        for i in range(2_000):
            fails(i)
        assert app.join(timeout=WAIT * 6)
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        for i in range(20_000):
            fails(i)
        assert app.join(timeout=WAIT * 12)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        logger.disabled = disabled
    assert after - baseline < 2 * MB
