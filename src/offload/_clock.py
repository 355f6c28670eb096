"""Time as an injected value.

Every component that reads the time or waits for it takes a ``Clock``, so
tests drive backoff, delays and timeouts with ``offload.testing.FakeClock``
instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Waitable(Protocol):
    """Anything with ``wait(timeout)``: ``threading.Event`` or ``Condition``."""

    def wait(self, timeout: float | None = None) -> bool: ...


class Clock(Protocol):
    """The source of time for offload's schedulers."""

    def now(self) -> float:
        """Seconds since the epoch (for ETAs stored in a broker)."""
        ...

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """Block on ``waitable`` for up to ``timeout`` seconds of this clock.

        Callers loop and re-check their condition, so a clock may return
        early (a fake clock returns after a short real pause).
        """
        ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        return time.time()

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        if timeout is not None and timeout < 0:
            timeout = 0
        return waitable.wait(timeout)


SYSTEM_CLOCK = SystemClock()
