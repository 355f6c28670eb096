"""Tasks the durable workflow tests enqueue and real worker processes run.

The broker URL comes from OFFLOAD_TEST_URL, set by the test for both the
test process and the workers it starts. Tasks that record their runs append
a line to a file (O_APPEND: whole lines, from many processes at once).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import offload

app = offload.App(
    os.environ.get("OFFLOAD_TEST_URL", "sqlite:///offload-workflows.db"), name="workflows"
)


def _append(path: str, line: str) -> None:
    with open(path, "a") as file:
        file.write(line + "\n")


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def total(numbers: list[int]) -> int:
    return sum(numbers)


@app.task(pool="process")
def square(x: int) -> int:
    """Runs in the worker's process pool: the fed argument crosses to the child."""
    return x * x


@app.task
def fails_until(value: int, flag: str) -> int:
    """Raises ``LookupError`` until the file ``flag`` exists (the test fixes the cause)."""
    if not Path(flag).exists():
        raise LookupError(f"no {flag} yet")
    return value * 10


@app.task
def member(path: str, index: int, seconds: float) -> int:
    """A chord's member: each run leaves its index in ``path``."""
    time.sleep(seconds)
    _append(path, str(index))
    return index


@app.task
def callback(results: list[int], path: str) -> int:
    """A chord's callback: each run leaves a line in ``path``; the results must be in order."""
    _append(path, "callback")
    if results != list(range(len(results))):
        raise AssertionError("the chord's results are not the members' results in order")
    return len(results)
