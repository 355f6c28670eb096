"""Durable tests: a SQLite file per test, and real `offload worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import TESTS
from servers import drop_postgres_schema, require_postgres, require_redis


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh broker URL of each kind; durable_tasks.app is rebuilt on it.

    A SQLite file per test; on the Redis and PostgreSQL test servers, a
    namespace of the test's own (in the URL, so worker processes share
    it), deleted afterwards.
    """
    namespace = f"t_{uuid.uuid4().hex}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    elif request.param == "redis":
        url = f"{require_redis()}?namespace={namespace}"
    else:
        url = f"{require_postgres()}?namespace={namespace}"
    monkeypatch.setenv("OFFLOAD_TEST_URL", url)
    sys.modules.pop("durable_tasks", None)
    yield url
    module = sys.modules.pop("durable_tasks", None)
    if module is not None:
        module.app.shutdown(wait=False)
    if request.param == "redis":
        from offload._brokers._redis import RedisBroker

        RedisBroker.from_url(url).drop()
    elif request.param == "postgresql":
        drop_postgres_schema(f"offload_{namespace}")


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
        if "--log-level" not in options:
            # At INFO a worker logs a line per job: thousands would fill the
            # pipe, which a test reads only at the end, and block the worker.
            options = (*options, "--log-level", "WARNING")
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
