"""``async def`` tasks on one event loop, in a thread the app owns.

Only coroutine functions run here; a sync task goes to the thread pool,
so nothing ever blocks this loop but the user's own coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from .._runner import Call, ainvoke
from ._base import Done, Start, timeout_error
from ._thread import check_size


class AsyncExecutor:
    """Runs up to ``size`` coroutines at once on a private event loop."""

    claims_inline = False

    def __init__(
        self, size: int, start: Start, done: Done, *, name: str = "offload-asyncio"
    ) -> None:
        check_size(size)
        self._size = size
        self._start_call = start
        self._done = done
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[int, asyncio.Task[None]] = {}  # by fencing token

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int) -> None:
        check_size(size)
        self._size = size  # the worker sizes its claims by this; the loop has no cap

    def execute(self, call: Call) -> None:
        self._ensure_loop().call_soon_threadsafe(self._start, call)

    def interrupt(self, call: Call) -> bool:
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(self._cancel_one, call.delivery.token)
        return True

    def shutdown(self, wait: bool) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if not wait:
            loop.call_soon_threadsafe(self._cancel_all)
        loop.call_soon_threadsafe(loop.stop)
        if wait and self._thread is not None:
            self._thread.join()

    # -- on the loop's thread ----------------------------------------------------

    def _start(self, call: Call) -> None:
        if not self._start_call(call):
            return
        task = asyncio.ensure_future(self._run(call))
        self._tasks.add(task)
        token = call.delivery.token
        self._running[token] = task

        def forget(ended: asyncio.Task[None]) -> None:
            self._tasks.discard(ended)
            self._running.pop(token, None)

        task.add_done_callback(forget)

    def _cancel_one(self, token: int) -> None:
        task = self._running.get(token)
        if task is not None:
            task.cancel()  # the coroutine gets CancelledError where it awaits

    async def _run(self, call: Call) -> None:
        try:
            coroutine = ainvoke(call)
            if call.timeout is None:
                result = await coroutine
            else:
                result = await _with_deadline(coroutine, call)
        except asyncio.CancelledError as error:
            self._done(call, None, error)
            raise
        except BaseException as error:  # noqa: BLE001 - reported, as Future does
            self._done(call, None, error)
        else:
            self._done(call, result, None)

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=_run_loop, args=(loop, ready), name=self._name, daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop


def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _with_deadline(coroutine: Any, call: Call) -> Any:
    # Not asyncio.wait_for: a TimeoutError raised by the task itself must stay
    # the task's error, not be mistaken for the deadline.
    inner = asyncio.ensure_future(coroutine)
    finished, _ = await asyncio.wait({inner}, timeout=call.timeout)
    if finished:
        return inner.result()
    inner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await inner
    raise timeout_error(call)
