"""Helpers for testing code that uses offload: a clock you move by hand, and a burst mode.

``run_until_idle(app)`` returns once everything due has run, so that a test
asserts what happened (or did not) exactly, instead of sleeping and hoping
the worker was quick enough::

    clock = FakeClock()
    app = offload.App(clock=clock)
    h = send.options(delay=60)(42)
    run_until_idle(app)          # nothing due: returns at once, h still pending
    clock.advance(60)
    run_until_idle(app)          # now it ran
    assert h.result(timeout=0) == ...
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ._clock import Waitable
from ._message import JobInfo, State

if TYPE_CHECKING:  # testing sits above _app in the layers; the type is all it needs
    from ._app import App


class FakeClock:
    """A clock that only moves when told: ``clock.advance(30)``.

    Give it to an ``App`` (``App(clock=clock)``) and backoff delays,
    ``delay=`` options and thread-pool timeouts follow it instead of the
    real time, so tests need no long sleeps.
    """

    # Waits return after this much real time so that callers re-check the
    # (fake) time; it bounds how late an advance() is noticed.
    POLL = 0.002

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        with self._lock:
            self._now += seconds

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        if timeout is not None and timeout <= 0:
            return waitable.wait(0)
        return waitable.wait(self.POLL)

    def sleep(self, seconds: float) -> None:
        """Real time passes a little; fake time by ``seconds``."""
        time.sleep(self.POLL)
        self.advance(seconds)


# The states of jobs that are not finished: waiting for their time, or running.
_UNFINISHED = (State.QUEUED, State.RETRYING, State.RUNNING)
# Real seconds between two looks at the broker.
_POLL = 0.001


def run_until_idle(app: App, timeout: float = 10.0) -> None:
    """Wait until nothing of ``app`` is due or running; ``TimeoutError`` after ``timeout``.

    Burst mode: every job whose time has come (no delay, or an ETA the
    app's clock has reached) is claimed and finished, and so is every call
    this process made, but for those that wait for a later time: those are
    left alone. With a ``FakeClock``, advance it and call again to run them.
    The app's own worker (in-process, or ``embedded_worker=True``) or any
    ``offload worker`` serving its broker does the work; this only watches,
    through ``app.inspector`` and ``app.pending``.

    ``timeout`` is real seconds. The ``TimeoutError`` lists what was still
    due or running, so a test that hangs says on what.
    """
    deadline = time.monotonic() + timeout
    idle_before = False
    while True:
        busy, waiting = _survey(app)
        # The handles too: a job the broker has finished may not have reached
        # its handle yet, and the test will look at the handle next.
        idle = not busy and app.pending <= waiting
        # Seen twice in a row: a job that moved between two states while the
        # broker was read (queued, then running) is never missed.
        if idle and idle_before:
            return
        idle_before = idle
        if time.monotonic() >= deadline:
            raise TimeoutError(_still_pending(app, busy, waiting, timeout))
        time.sleep(_POLL)


def _survey(app: App) -> tuple[list[JobInfo], int]:
    """The jobs of ``app``'s broker that are due or running, and how many wait for later."""
    inspector = app.inspector
    unfinished = sum(
        count
        for per_queue in inspector.counts().values()
        for state, count in per_queue.items()
        if state in _UNFINISHED
    )
    if not unfinished:
        return [], 0
    now = app.clock.now()
    busy: list[JobInfo] = []
    waiting = 0
    for state in _UNFINISHED:
        for job in inspector.jobs(state=state, limit=unfinished):
            if state is State.RUNNING or job.eta is None or job.eta <= now:
                busy.append(job)
            else:
                waiting += 1
    return busy, waiting


def _still_pending(app: App, busy: list[JobInfo], waiting: int, timeout: float) -> str:
    shown = ", ".join(f"{job.task} {job.id} ({job.state})" for job in busy[:10])
    more = f" and {len(busy) - 10} more" if len(busy) > 10 else ""
    lines = []
    if busy:
        lines.append(f"{len(busy)} job(s) due or running: {shown}{more}")
        if not any(job.state is State.RUNNING for job in busy):
            lines.append(
                "none of them running: does a worker serve their queues? (an in-process "
                "app, or embedded_worker=True, runs its own)"
            )
    unfinished = app.pending - waiting
    if unfinished > 0:
        lines.append(f"{unfinished} call(s) of this process not finished")
    return f"{app!r} was not idle after {timeout:g}s: " + "; ".join(lines)


__all__ = ["FakeClock", "run_until_idle"]
