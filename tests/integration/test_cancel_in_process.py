"""``handle.cancel()`` of a running call in-process: asyncio and process pools.

(Threads: tests/unit/test_handle.py; a durable worker elsewhere:
tests/e2e/durable/test_cancel_running.py.)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import offload
import process_tasks
from helpers import wait_until
from offload._executors import CANCEL_GRACE

CHILD_START = 30.0


@pytest.fixture
def app() -> Iterator[offload.App]:
    app = offload.App(processes=1)
    yield app
    app.shutdown(wait=False, cancel_pending=True)


def test_a_running_coroutine_is_cancelled_where_it_awaits(app: offload.App) -> None:
    seen: list[str] = []

    @app.task(retries=3)
    async def waits() -> None:
        seen.append("started")
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    handle = waits()
    assert wait_until(lambda: seen == ["started"])
    asked = time.monotonic()
    assert handle.cancel() is True
    assert time.monotonic() - asked < 2
    assert seen == ["started", "cancelled"], "cancelled once: no retry follows"
    with pytest.raises(offload.TaskCancelled):
        handle.result(timeout=0)


def test_a_process_pool_task_is_interrupted(app: offload.App, tmp_path: Path) -> None:
    task = app.task(pool="process", retries=2)(process_tasks.sleep_until_interrupted)
    marker = tmp_path / "marker"
    handle = task(str(marker), 300)
    assert wait_until(lambda: marker.exists() and marker.read_text() == "started ", CHILD_START)
    time.sleep(0.2)  # into its sleep: an interrupt while it writes "started" stops it there
    assert handle.cancel() is True
    assert marker.read_text() == "started told"
    assert handle.state is offload.State.CANCELLED


def test_a_process_that_ignores_the_interrupt_is_killed_after_the_grace_and_replaced(
    app: offload.App, tmp_path: Path
) -> None:
    task = app.task(pool="process")(process_tasks.ignore_interrupts)
    pid = app.task(pool="process")(process_tasks.pid)
    before = pid().result(timeout=CHILD_START)
    marker = tmp_path / "marker"
    handle = task(str(marker), 300)
    assert wait_until(marker.exists, CHILD_START)
    asked = time.monotonic()
    assert handle.cancel() is True
    took = time.monotonic() - asked
    assert CANCEL_GRACE <= took < CANCEL_GRACE + 2, took
    assert "ignored" in marker.read_text()
    after = pid().result(timeout=CHILD_START)
    assert after != before and after != os.getpid(), "a new child replaced the killed one"
