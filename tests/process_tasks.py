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
