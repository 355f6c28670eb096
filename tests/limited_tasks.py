"""Tasks with rate and concurrency limits, run by real worker processes (tests/e2e).

The broker URL comes from OFFLOAD_TEST_URL, as for ``durable_tasks``. Each
task appends one line per call to the file it is given (``O_APPEND``: lines
from many processes never mix), with the times it measured itself.
"""

from __future__ import annotations

import os
import time

import offload

app = offload.App(os.environ.get("OFFLOAD_TEST_URL", "sqlite:///offload-test.db"), name="limited")


def _note(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@app.task(rate_limit="20/s")
def rated(path: str) -> None:
    _note(path, f"{time.time():.6f}")


@app.task(concurrency=2)
def bounded(path: str, seconds: float) -> None:
    start = time.time()
    time.sleep(seconds)
    _note(path, f"{start:.6f} {time.time():.6f}")


@app.task
def free(path: str) -> None:
    _note(path, f"{time.time():.6f}")


@app.task(rate_limit="10/s", limit_key="customer")
def keyed(path: str, customer: str) -> None:
    _note(path, f"{time.time():.6f} {customer}")
