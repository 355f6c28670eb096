"""Small helpers for the tests (importable as ``helpers``: tests/ is on sys.path)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[str], timeout: float) -> str:
    """SIGTERM ``process``, SIGKILL its group if it is not gone within ``timeout``; its output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.stdout.read() if process.stdout else ""
