"""Small helpers for the tests (importable as ``helpers``: tests/ is on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parent
"""The tests folder: where the task modules worker processes import live (durable_tasks...)."""

WAIT = 5.0
"""Seconds a test waits for something that should happen at once."""


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until it is true; ``False`` if it never became true in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return bool(predicate())
