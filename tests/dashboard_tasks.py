"""Tasks of the dashboard's browser test: a worker process runs them.

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
