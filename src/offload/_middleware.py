"""The seam: code that runs around every enqueue and every attempt.

``App(middleware=[...])`` takes ``Middleware`` objects; the first in the
list is the outermost. Every hook is optional (the defaults do nothing),
and a chain only calls the middleware that override a hook, so an app
without middleware pays nothing but one ``is None`` test per call.

- ``enqueue(messages, call_next)``: around storing a batch (every broker,
  single calls and ``map``/``enqueue_many`` alike); may edit the messages
  (``message.meta`` carries small strings to the worker) or refuse them.
- ``execute(job, call_next)``: around one attempt, where the code runs (a
  pool thread; for the process pool, the parent's slot thread around the
  child's run). What it raises fails the attempt as the task would (retries
  apply); ``raise offload.Delay(seconds)`` puts the message back to wait
  instead, no attempt counted. ``aexecute`` is its twin for ``async def``
  tasks; by default it runs ``execute`` around the coroutine.
- ``outcome(job, outcome)``: after the broker recorded how the attempt
  ended (succeeded, failed, cancelled, retrying, delayed).
- ``startup(worker)``, ``shutdown(worker)``: as a worker starts and stops.

A notification that raises is logged with its traceback; it never stops a
worker or loses a job.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._context import JobContext
from ._errors import ConfigurationError
from ._message import ErrorInfo, Message, Outcome

if TYPE_CHECKING:
    from ._worker import Worker

log = logging.getLogger(__name__)

Store = Callable[[list[Message]], list[str]]


class Delay(Exception):
    """Raised by a middleware (or a task): put this message back to wait, no attempt counted.

    ``Delay(2.5)`` (seconds), ``Delay(timedelta(minutes=1))`` or
    ``Delay(datetime)`` (aware, or naive UTC). The message returns to the
    broker with that ETA, where other workers, priorities and cancellation
    can still reach it; this is how rate and concurrency limits wait.
    """

    def __init__(self, until: float | datetime.timedelta | datetime.datetime) -> None:
        super().__init__(until)
        self.until = until

    def eta(self, now: float) -> float:
        """The epoch second the message becomes claimable again."""
        until = self.until
        if isinstance(until, datetime.datetime):
            if until.tzinfo is None:
                until = until.replace(tzinfo=datetime.timezone.utc)
            return until.timestamp()
        seconds = until.total_seconds() if isinstance(until, datetime.timedelta) else until
        if not isinstance(seconds, (int, float)) or math.isnan(seconds):
            raise ConfigurationError(
                f"offload.Delay({until!r}): give seconds, a timedelta or a datetime"
            )
        return now + max(0.0, float(seconds))


class Skip(Exception):
    """Raised by offload's workflow gate: end this job without running it, no attempt
    retried. With ``error``: failed with it (and ``info``, its stored record, if
    given); without: cancelled. Private: a user's middleware raises ``Delay`` or fails."""

    def __init__(self, error: BaseException | None = None, info: ErrorInfo | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.info = info


class Middleware:
    """Base class of middleware: override the hooks you need; the others do nothing."""

    def enqueue(self, messages: list[Message], call_next: Store) -> list[str]:
        """Around storing ``messages`` (one batch); returns their job ids."""
        return call_next(messages)

    def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
        """Around one attempt of a (sync) task; returns its result."""
        return call_next()

    async def aexecute(self, job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        """Around one attempt of an ``async def`` task; returns its result.

        Default: this middleware's ``execute`` runs around the coroutine, in
        a helper thread (the coroutine still runs on the loop). Override it
        to stay on the loop.
        """
        if not _overrides(self, "execute"):
            return await call_next()
        return await _execute_around_coroutine(self, job, call_next)

    def outcome(self, job: JobContext, outcome: Outcome) -> None:
        """After the broker recorded how the attempt ended."""

    def startup(self, worker: Worker) -> None:
        """As a worker starts (before its first claim)."""

    def shutdown(self, worker: Worker) -> None:
        """As a worker stops (after its last outcome)."""


def _overrides(middleware: Middleware, hook: str) -> bool:
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)


async def _execute_around_coroutine(
    middleware: Middleware, job: JobContext, call_next: Callable[[], Awaitable[Any]]
) -> Any:
    """Run a sync ``execute`` hook around a coroutine: the hook in a thread, the coroutine here."""
    loop = asyncio.get_running_loop()

    def run_on_loop() -> Any:
        async def step() -> Any:
            return await call_next()

        return asyncio.run_coroutine_threadsafe(step(), loop).result()

    return await asyncio.to_thread(middleware.execute, job, run_on_loop)


class Chain:
    """The middleware of one app, each hook's list holding only those that override it."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        for item in middleware:
            if not isinstance(item, Middleware):
                raise ConfigurationError(
                    f"middleware=[...] takes offload.Middleware instances, not {item!r}; "
                    "subclass offload.Middleware and pass an instance"
                )
        self.middleware = tuple(middleware)
        self._enqueue = self._overriding("enqueue")
        self._execute = self._overriding("execute")
        self._aexecute = tuple(
            m for m in self.middleware if m in self._execute or _overrides(m, "aexecute")
        )
        self._outcome = self._overriding("outcome")

    def _overriding(self, hook: str) -> tuple[Middleware, ...]:
        return tuple(m for m in self.middleware if _overrides(m, hook))

    @property
    def wraps_enqueue(self) -> bool:
        """Whether any middleware wraps enqueue (else messages go straight to the broker)."""
        return bool(self._enqueue)

    @property
    def wraps_execution(self) -> bool:
        """Whether any middleware wraps attempts (else ``invoke`` calls the function bare)."""
        return bool(self._execute or self._aexecute)

    def enqueue(self, messages: list[Message], store: Store) -> list[str]:
        chain = self._enqueue
        if not chain:
            return store(messages)

        def step(index: int, batch: list[Message]) -> list[str]:
            if index == len(chain):
                return store(batch)
            return chain[index].enqueue(batch, lambda changed: step(index + 1, changed))

        return step(0, messages)

    def execute(self, job: JobContext, run: Callable[[], Any]) -> Any:
        chain = self._execute

        def step(index: int) -> Any:
            if index == len(chain):
                return run()
            return chain[index].execute(job, lambda: step(index + 1))

        return step(0)

    async def aexecute(self, job: JobContext, run: Callable[[], Awaitable[Any]]) -> Any:
        chain = self._aexecute

        async def step(index: int) -> Any:
            if index == len(chain):
                return await run()
            return await chain[index].aexecute(job, lambda: step(index + 1))

        return await step(0)

    def outcome(self, job: JobContext, outcome: Outcome) -> None:
        for middleware in self._outcome:
            _notify(middleware, "outcome", job, outcome)

    def startup(self, worker: Worker) -> None:
        for middleware in self.middleware:
            _notify(middleware, "startup", worker)

    def shutdown(self, worker: Worker) -> None:
        for middleware in reversed(self.middleware):  # innermost first, as a stack unwinds
            _notify(middleware, "shutdown", worker)


def _notify(middleware: Middleware, hook: str, *args: Any) -> None:
    try:
        getattr(middleware, hook)(*args)
    except Exception:
        log.exception(
            "offload middleware %s.%s raised; the worker goes on", type(middleware).__name__, hook
        )
