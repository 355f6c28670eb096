"""Durable tests: a SQLite file per test, and real `offload worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]  # where durable_tasks.py lives


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite URL; durable_tasks.app is rebuilt on it."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("OFFLOAD_TEST_URL", url)
    sys.modules.pop("durable_tasks", None)
    yield url
    module = sys.modules.pop("durable_tasks", None)
    if module is not None:
        module.app.shutdown(wait=False)


@pytest.fixture
def tasks(db_url: str) -> object:
    import durable_tasks

    return durable_tasks


@pytest.fixture
def start_worker(db_url: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``offload worker durable_tasks:app`` processes; all killed after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*options: str) -> subprocess.Popen[str]:
        env = {**os.environ, "OFFLOAD_TEST_URL": db_url, "PYTHONPATH": str(TESTS)}
        process = subprocess.Popen(
            [sys.executable, "-m", "offload", "worker", "durable_tasks:app", *options],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: killed as a group below
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
