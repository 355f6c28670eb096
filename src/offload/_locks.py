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
call, and two to three times the time per call of ``concurrent.futures``,
whose pool threads share no Python lock; moving one shared lock out of the
way moved the convoy to the next.

``TokenLock`` is taken only by a thread that holds the GIL, so it cannot
convoy: a waiter blocks until a release wakes it, then tries again with the
GIL in hand. (A lock that gives up the GIL and tries again before it blocks
did as well, at the cost of two Python-level calls per ``with``.)
"""

from __future__ import annotations

from queue import Empty, SimpleQueue


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
