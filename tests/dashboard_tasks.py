"""Tasks of the dashboard's browser test: a worker process runs them.

Schedules fire only in the workers started with their scheduler.
The broker URL comes from OFFLOAD_TEST_URL, set by the test for itself,
the dashboard and the worker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import offload

app = offload.App(os.environ.get("OFFLOAD_TEST_URL", "sqlite:///offload-test.db"), name="dash")


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(retries=0)
def charge(order: str, marker: str) -> str:
    """Fails until the file ``marker`` exists: the test fixes the cause, then retries it."""
    if not Path(marker).exists():
        raise ConnectionError(f"payment service unreachable for order {order}")
    return f"charged {order}"


@app.task(retries=0)
def crunch(total: int, marker: str) -> int:
    """Reports progress up to ``total - 3`` rows, then waits (at most 2 minutes) for the
    file ``marker``: the test looks at it running, then lets it finish."""
    for row in range(total - 2):
        offload.current().progress(row, total, f"importing <rows> of batch {row}")
    deadline = time.monotonic() + 120
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    offload.current().progress(total, total, "done")
    return total


@app.periodic(every=2)
def heartbeat() -> None:
    """A tick every two seconds (workers started with --no-scheduler leave it alone)."""


@app.periodic(cron="30 4 * * 1", tz="Europe/Paris", missed="once")
def weekly_report() -> None:
    """Monday 04:30 in Paris: never due during a test."""
