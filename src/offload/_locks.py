"""Locks for short critical sections that many threads of one process share.

Why not a plain ``threading.Lock``: a thread that blocks on a taken lock
waits without the GIL, and when the lock is released it *takes the lock
first* and only then waits for the GIL, up to the switch interval (5 ms)
while another thread runs Python. Every other thread that reaches the lock
meanwhile blocks too, giving up the GIL: a convoy, one context switch per
acquisition, that never ends once it starts. It starts whenever a forced
GIL switch lands inside a critical section. Measured on the in-process
path (no-op tasks submitted faster than six pool threads ran them, two idle
cores): 0.5 to 1 blocked acquisition and 1.5 to 2.4 context switches per
call, and two to three times the time per call of ``concurrent.futures``,
whose pool threads share no Python lock; moving one shared lock out of the
way moved the convoy to the next.

Both locks here are taken only by a thread that holds the GIL, so they
cannot convoy. ``TokenLock`` (a queue holding one token) blocks a waiter
until a release wakes it, then lets it try again with the GIL in hand;
``YieldingLock`` gives the GIL up for a moment and tries again before it
blocks as a plain lock does, and can be reentrant.
"""

from __future__ import annotations

import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

YIELD_FOR = 0.002
"""Seconds a contended ``YieldingLock`` keeps trying before it blocks."""
PAUSE = 0.00001
"""Seconds it sleeps between tries: long enough for a holder that waits for the GIL
to wake and take it (``sleep(0)`` gave the GIL back before that thread woke)."""


class TokenLock(SimpleQueue):  # type: ignore[type-arg]
    """A mutex that is taken only by a thread that holds the GIL: a queue with one token.

    ``with lock:`` takes the token (``SimpleQueue.get``, blocking while
    another thread has it) and gives it back (``put``). Both are single C
    calls, as cheap as a plain lock's. What differs is whom a release wakes:
    a waiter woken by ``put`` takes the GIL first and only then the token,
    and if a running thread took it meanwhile, it waits again. A plain lock
    is handed to the waiter at once, before it has the GIL, so that every
    thread arriving while the waiter waits for the GIL blocks as well (see
    the module's docstring). Releasing it twice would let two threads in:
    unlike a plain lock it cannot tell: use it in ``with`` blocks (or as a
    ``threading.Condition``'s lock, which pairs them too).
    """

    __slots__ = ()
    # As C functions: ``with`` costs no Python-level call. ``__exit__`` puts back
    # whatever it is given (the exception type, or None): the token means nothing.
    __enter__ = SimpleQueue.get
    __exit__ = SimpleQueue.put

    def __init__(self) -> None:
        self.put(None)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """The lock protocol, for ``threading.Condition``."""
        try:
            self.get(blocking, None if timeout < 0 else timeout)
        except Empty:
            return False
        return True

    def release(self) -> None:
        self.put(None)


class YieldingLock:
    """``threading.Lock`` (or ``RLock`` with ``reentrant``) that yields before it blocks.

    Costlier than ``TokenLock`` (its ``with`` is two Python-level calls): for
    a lock that must be reentrant.

    Use it as a ``with`` block or a ``threading.Condition``'s lock; it has the
    lock protocol's ``acquire`` and ``release``.
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
