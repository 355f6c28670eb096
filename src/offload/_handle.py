"""``Handle[R]``: what calling a task returns.

A handle *is* a ``concurrent.futures.Future``, so the standard library's
``wait`` and ``as_completed``, ``asyncio.wrap_future`` and every tool that
takes a future accept it. On top it has an ``id``, a ``state`` that knows
about retries, ``await handle``, and it logs an exception nobody looked at
when it is garbage-collected, as asyncio does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ._errors import ResultTimeout, TaskCancelled
from ._message import State

R = TypeVar("R")

log = logging.getLogger("offload")


class Handle(concurrent.futures.Future[R]):
    """A running (or queued, or finished) call of a task.

    >>> h = work(3)
    >>> h.result(timeout=5)
    9
    """

    # Not slots: Future itself has a __dict__, and handles get weak references.

    def __init__(self, id: str, task_name: str) -> None:  # noqa: A002 - the public name is id
        super().__init__()
        self.id = id
        self.task_name = task_name
        self._offload_state = State.QUEUED
        self._retrieved = False

    # -- reading ------------------------------------------------------------

    @property
    def state(self) -> State:
        """``queued``, ``running``, ``retrying``, ``succeeded``, ``failed`` or ``cancelled``."""
        return self._offload_state

    def result(self, timeout: float | None = None) -> R:
        """The task's return value, waiting up to ``timeout`` seconds.

        Raises the task's own exception if it failed (after its last
        retry), ``offload.TaskCancelled`` if it was cancelled, and
        ``offload.ResultTimeout`` if it is not done in time.
        """
        self._retrieved = True
        try:
            return super().result(timeout)
        except concurrent.futures.TimeoutError:
            if self.done():  # the task's own TimeoutError (TaskTimeout is one)
                raise
            raise self._timeout_error(timeout) from None
        except concurrent.futures.CancelledError as exc:
            if isinstance(exc, TaskCancelled):
                raise
            raise TaskCancelled(f"{self._describe()} was cancelled before it ran") from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception (``None`` if it succeeded), waiting up to ``timeout``."""
        self._retrieved = True
        try:
            return super().exception(timeout)
        except concurrent.futures.TimeoutError:
            if self.done():
                raise
            raise self._timeout_error(timeout) from None

    def __await__(self) -> Generator[Any, None, R]:
        """``await handle`` waits without blocking the event loop."""
        self._retrieved = True
        return asyncio.wrap_future(self).__await__()

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[R]], object]) -> None:
        """Call ``fn(handle)`` when the task finishes (at once if it has)."""
        super().add_done_callback(fn)

    def __repr__(self) -> str:
        return f"<Handle {self.task_name} {self.id} {self._offload_state}>"

    # -- transitions (called by offload's runner) ----------------------------

    def cancel(self) -> bool:
        """Cancel the call if it has not started; ``True`` if it is now cancelled."""
        if super().cancel():
            self._offload_state = State.CANCELLED
            return True
        return self._offload_state is State.CANCELLED

    def set_running_or_notify_cancel(self) -> bool:
        if self._offload_state is State.RETRYING:
            self._offload_state = State.RUNNING
            return True
        started = super().set_running_or_notify_cancel()
        self._offload_state = State.RUNNING if started else State.CANCELLED
        return started

    def set_retrying(self) -> None:
        self._offload_state = State.RETRYING

    def set_result(self, result: R) -> None:
        self._offload_state = State.SUCCEEDED
        super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        self._offload_state = State.FAILED
        super().set_exception(exception)

    # -- helpers -------------------------------------------------------------

    def _describe(self) -> str:
        return f"task {self.task_name!r} (id {self.id})"

    def _timeout_error(self, timeout: float | None) -> ResultTimeout:
        return ResultTimeout(
            f"{self._describe()} did not finish within {timeout}s; it is still "
            f"{self._offload_state}. Wait longer, or call handle.cancel() if it is still queued."
        )

    def __del__(self) -> None:
        # Like asyncio: an exception that no one ever retrieved is logged once,
        # so a failing background task is never silent.
        if self._offload_state is State.FAILED and not self._retrieved:
            error = super().exception(0)
            if error is not None:
                log.error(
                    "Exception in task %r (id %s) was never retrieved",
                    self.task_name,
                    self.id,
                    exc_info=(type(error), error, error.__traceback__),
                    extra={"task": self.task_name, "task_id": self.id},
                )
