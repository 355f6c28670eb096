"""Helpers for testing code that uses offload: a clock you move by hand."""

from __future__ import annotations

import threading
import time

from ._clock import Waitable


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


__all__ = ["FakeClock"]
