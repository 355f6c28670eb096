"""Tasks the durable tests enqueue and real worker processes run.

The broker URL comes from OFFLOAD_TEST_URL, set by the test for both the
test process and the workers it starts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import offload

app = offload.App(os.environ.get("OFFLOAD_TEST_URL", "sqlite:///offload-test.db"), name="durable")


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def record(path: str, value: str) -> str:
    """Append ``value`` to a file: the test counts how often each ran."""
    with open(path, "a") as file:
        file.write(value + "\n")
    return value


@app.task
def slow_record(path: str, value: str, seconds: float) -> str:
    time.sleep(seconds)
    with open(path, "a") as file:
        file.write(value + "\n")
    return value


@app.task
def pid() -> int:
    return os.getpid()


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


class LocalError(Exception):
    """Importable here, so the producer gets the same type back."""


@app.task
def fail_locally(message: str) -> None:
    raise LocalError(message)


@app.task(retries=2, backoff=offload.Backoff(base=0.01, jitter=False))
def flaky(path: str) -> int:
    """Fails until it has run three times (counted in a file)."""
    marks = Path(path)
    runs = len(marks.read_text().splitlines()) + 1 if marks.exists() else 1
    marks.write_text("x\n" * runs)
    if runs < 3:
        raise ConnectionError(f"attempt {runs} fails")
    return runs


@dataclass
class Point:
    x: int
    y: int


@app.task
def swap(point: Point) -> Point:
    return Point(point.y, point.x)


def plain(x: int) -> int:
    """Not a task: enqueued RQ-style with app.enqueue(plain, 3)."""
    return x * 10


@app.task
def addresses() -> list[str]:
    """The IPv4 addresses of the host the worker runs on (its network namespace)."""
    import subprocess

    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True)
    return sorted(line.split()[3].split("/")[0] for line in out.stdout.splitlines())


@app.task
def report_then_wait(release: str, steps: int) -> int:
    """Report ``steps - 1`` of ``steps`` done, then wait until the file ``release`` exists."""
    job = offload.current()
    for done in range(steps):
        job.progress(done, steps, f"step {done}")
    while not os.path.exists(release):
        time.sleep(0.02)
    job.progress(steps, steps, "all done")
    return steps


def _append(path: str, line: str) -> str:
    with open(path, "a") as file:
        file.write(line + "\n")
    return line


@app.task
def five_steps(path: str, die_after: int) -> list[str]:
    """Five durable steps, each appending a line to ``path``; on its first attempt the
    worker process kills itself (SIGKILL) right after step ``die_after``."""
    done = []
    for n in range(1, 6):
        done.append(offload.step(f"step-{n}", _append, path, f"step {n}"))
        if n == die_after and offload.current().attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    return done


@app.task
def stall_first(path: str, value: str) -> str:
    """Hangs on its first attempt (its worker is killed meanwhile); records on a later one."""
    if offload.current().attempt == 1:
        time.sleep(300)
    with open(path, "a") as file:
        file.write(f"{value} {os.getpid()}\n")
    return value


def _note(marker: str, text: str) -> None:
    with open(marker, "a") as file:
        file.write(text)


@app.task
def until_cancelled(marker: str) -> None:
    """A thread's task that checks for a cancel, as a long loop should."""
    _note(marker, "started ")
    while not offload.current().cancelled:
        time.sleep(0.02)
    _note(marker, "told")
    offload.current().check_cancelled()


@app.task
async def async_until_cancelled(marker: str) -> None:
    _note(marker, "started ")
    try:
        await asyncio.sleep(300)
    except asyncio.CancelledError:
        _note(marker, "told")
        raise


@app.task(pool="process")
def process_until_cancelled(marker: str) -> None:
    _note(marker, "started ")
    try:
        time.sleep(300)
    except KeyboardInterrupt:
        _note(marker, "told")
        raise


@app.task
def ignores_cancel(marker: str, seconds: float) -> None:
    """A thread's task that never checks for a cancel: it runs its time out."""
    _note(marker, "started ")
    time.sleep(seconds)
    _note(marker, "done")
