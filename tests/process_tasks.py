"""Module-level functions for the process pool tests: a child process imports them."""

from __future__ import annotations

import os
import time

import offload


def square(x: int) -> int:
    return x * x


def pid() -> int:
    return os.getpid()


def sleep_then(seconds: float, value: int = 0) -> int:
    time.sleep(seconds)
    return value


def boom(message: str) -> None:
    raise ValueError(message)


@offload.task(pool="process")
def decorated_cube(x: int) -> int:
    """A task declared the usual way, with the decorator at module level."""
    return x * x * x


def report_then_wait(release: str, steps: int) -> int:
    """Report ``steps - 1`` of ``steps`` done, then wait until the file ``release`` exists."""
    job = offload.current()
    for done in range(steps):
        job.progress(done, steps, f"step {done}")
    while not os.path.exists(release):
        time.sleep(0.01)
    return steps


def report_for(seconds: float, reports: int) -> float:
    """Report progress in a tight loop for ``seconds``; how long it ran."""
    started = time.monotonic()
    done = 0
    while time.monotonic() - started < seconds:
        for _ in range(reports):
            done += 1
            offload.current().progress(done)
    return time.monotonic() - started


def _append(path: str, line: str) -> str:
    with open(path, "a") as file:
        file.write(line + "\n")
    return line


def step_then_fail_once(path: str) -> str:
    """A step, then a failure on the first attempt only: the retry must not redo the step."""
    line = offload.step("write", _append, path, "written")
    if offload.current().attempt == 1:
        raise ConnectionError("after the step")
    return line


def sleep_until_interrupted(marker: str, seconds: float) -> None:
    """Sleep; note a KeyboardInterrupt (a cancel) and stop there."""
    with open(marker, "a") as file:
        file.write("started ")
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        with open(marker, "a") as file:
            file.write("told")
        raise


def ignore_interrupts(marker: str, seconds: float) -> None:
    """Swallow every KeyboardInterrupt: only killing the process stops it."""
    with open(marker, "a") as file:
        file.write("started ")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            with open(marker, "a") as file:
                file.write("ignored ")
