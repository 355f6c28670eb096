"""A 1-second schedule that real worker processes run (tests/e2e/durable/test_schedules_e2e.py).

The broker URL comes from OFFLOAD_TEST_URL; each run appends its job id and
process id to OFFLOAD_TEST_TICKS (a file), so the test counts runs per tick.
"""

from __future__ import annotations

import os

import offload

app = offload.App(os.environ.get("OFFLOAD_TEST_URL", "sqlite:///offload-test.db"), name="ticks")


@app.periodic(every=1, missed="all", max_catch_up=10)
def beat() -> None:
    """Record one run of a tick: its job id and this worker's pid."""
    with open(os.environ["OFFLOAD_TEST_TICKS"], "a") as file:
        file.write(f"{offload.current().id} {os.getpid()}\n")
