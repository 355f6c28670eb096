"""A lock for short critical sections that many threads of one process share.

Why not a plain ``threading.Lock``: a thread that blocks on a taken lock
waits without the GIL, and when the lock is released it *takes the lock
first* and only then waits for the GIL, up to the switch interval (5 ms)
while another thread runs Python. Every other thread that reaches the lock
meanwhile blocks too, giving up the GIL: a convoy, one context switch per
acquisition, that never ends once it starts. It starts whenever a forced
GIL switch lands inside a critical section. Measured on the in-process
path (no-op tasks submitted faster than six pool threads ran them, two idle
cores): 0.5 to 1 blocked acquisition and 1.5 to 2.4 context switches per
call, and three times the time per call of ``concurrent.futures``, whose
pool threads share no Python lock; moving one shared lock out of the way
moved the convoy to the next.

``YieldingLock`` never blocks holding nothing: when the lock is taken it
gives up the GIL for a moment (``time.sleep(0)``), so that a holder
switched out mid-section gets it back and finishes, and tries again with
the GIL in hand. A lock taken only by threads that hold the GIL cannot
convoy. After a few tries (a holder that is really busy, or blocked), it
blocks as a plain lock does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

YIELD_FOR = 0.002
PAUSE = 0.00001
"""Seconds a contended acquisition yields the GIL, trying again, before it blocks."""


class YieldingLock:
    """``threading.Lock`` (or ``RLock`` with ``reentrant``) that yields before it blocks.

    Use it as a ``with`` block or a ``threading.Condition``'s lock; it has the
    lock protocol's ``acquire``, ``release`` and ``locked``.
    """

    __slots__ = ("_lock",)

    def __init__(self, *, reentrant: bool = False) -> None:
        self._lock: Any = threading.RLock() if reentrant else threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        return self._contended(timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire(False) or self._contended(-1)

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def _contended(self, timeout: float) -> bool:
        try_again, clock = self._lock.acquire, time.monotonic
        give_up = clock() + YIELD_FOR
        while clock() < give_up:
            time.sleep(PAUSE)  # the GIL to whoever holds the lock, then back
            if try_again(False):
                return True
        return bool(try_again(True, timeout))
