"""``await task.aio(...)`` on SQLite, Redis and PostgreSQL: stored without blocking the loop.

An enqueue middleware holds the store until a coroutine scheduled on the
same loop has run. Were the enqueue made on the loop's thread, that
coroutine could not run while it waits, and the middleware would give up
after its timeout: so a pass shows the loop stayed free during the store.
A real worker then runs the job and ``await handle`` reads its result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import offload
from servers import scratch_url


def double(x: int) -> int:
    return 2 * x


class Gate(offload.Middleware):
    """Holds each enqueue until the event loop has run a coroutine (or 20 s pass)."""

    def __init__(self) -> None:
        self.loop_ran = threading.Event()
        self.loop_was_free: bool | None = None
        self.thread: threading.Thread | None = None

    def enqueue(self, messages: Any, call_next: Callable[[Any], list[str]]) -> list[str]:
        self.thread = threading.current_thread()
        self.loop_was_free = self.loop_ran.wait(20)
        return call_next(messages)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with scratch_url(request.param, tmp_path) as url:
        yield url


def test_aio_stores_the_call_off_the_loop_and_a_worker_runs_it(url: str) -> None:
    gate = Gate()
    app = offload.App(url, middleware=[gate], name="aio")
    task = app.task(double)
    worker = app.worker(concurrency=1)
    worker.start()

    async def scenario() -> tuple[threading.Thread, int]:
        async def mark() -> None:
            gate.loop_ran.set()

        loop_thread = threading.current_thread()
        marker = asyncio.ensure_future(mark())  # runs only when the loop is free
        handle = await task.aio(21)
        await marker
        return loop_thread, await asyncio.wait_for(handle, 30)

    try:
        loop_thread, result = asyncio.run(scenario())
    finally:
        worker.stop()
        app.shutdown(wait=False)
    assert result == 42
    assert gate.loop_was_free, "the enqueue held the event loop: the coroutine never ran"
    assert gate.thread is not None and gate.thread is not loop_thread
