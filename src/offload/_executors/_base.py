"""The executor interface, and the deadline watcher the thread pool uses."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .._clock import Clock
from .._errors import TaskTimeout
from .._runner import Call

log = logging.getLogger(__name__)

Start = Callable[[Call], bool]
"""Called just before a call runs; ``False`` means skip it (it was cancelled)."""

CANCEL_GRACE = 3.0
"""Seconds a cancelled process-pool task has to stop after its SIGINT before its process
is killed (and replaced)."""

Done = Callable[[Call, Any, "BaseException | None"], None]
"""Called once per started call: ``done(call, result, None)`` or ``done(call, None, error)``."""


class Executor(Protocol):
    """Runs calls somewhere and reports how they ended."""

    @property
    def size(self) -> int:
        """How many calls may run at once."""
        ...

    claims_inline: bool
    """Whether ``done`` may claim the next message in the calling thread
    (not on an event loop, where a broker round trip would block it)."""

    def execute(self, call: Call) -> None:
        """Start ``call`` (or queue it until a slot is free); ``done`` is called when it ends."""
        ...

    def resize(self, size: int) -> None:
        """Change how many calls may run at once, while running."""
        ...

    def interrupt(self, call: Call) -> bool:
        """Stop ``call``, running here; ``False`` if it cannot be stopped (a thread),
        only told (its job context says it was cancelled)."""
        ...

    def shutdown(self, wait: bool) -> None:
        """Stop taking calls; with ``wait``, let running ones finish."""
        ...


def timeout_error(call: Call) -> TaskTimeout:
    message = call.delivery.message
    return TaskTimeout(
        f"task {message.task!r} (id {message.id}) exceeded its timeout of {call.timeout:g}s"
    )


class Once:
    """Lets exactly one of two racing parties (completion, deadline) report."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def claim(self) -> bool:
        return self._lock.acquire(blocking=False)


class Deadlines:
    """One thread that fires callbacks at their deadlines (started on first use)."""

    def __init__(self, clock: Clock, name: str) -> None:
        self._clock = clock
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def at(self, seconds_from_now: float, callback: Callable[[], None]) -> None:
        deadline = self._clock.now() + seconds_from_now
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._sequence), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                now = self._clock.now()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._clock.wait(self._cond, timeout)
                    continue
            for callback in due:
                try:
                    callback()
                except Exception:
                    log.exception("offload deadline callback failed")
