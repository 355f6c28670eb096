"""The dispatcher's role, passed between two threads so that one of them can run a job.

An idle worker's dispatcher blocks on the broker, claims a job, and used to
hand it to a pool thread: a thread to wake, and a wait for the interpreter
lock while the dispatcher prepared its next wait. The job's start waited on
both (50-90 µs of a 0.65 ms round trip on Redis). With a relay, the
dispatcher passes its role to a second thread that stands by, runs the job
itself, the very thread the broker's answer woke, and stands by in turn
once the job is done. The next wait is not delayed by a long job: the
thread that stood by makes it.

When the thread standing by is busy (its own job still runs), the role is
not passed and the job goes to the pool, as before.
"""

from __future__ import annotations

import threading


class Relay:
    """Two threads, at most one dispatching at a time; ``pass_on`` hands the role over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._baton = threading.Semaphore(0)  # released: the thread standing by dispatches
        self._standing_by = True  # the second thread's first state
        self._stopped = False
        self.running: dict[int, threading.Thread] = {}
        """Threads running a job they claimed (by ident): ``Worker.stop`` joins them
        like pool threads, not like the dispatcher."""

    def pass_on(self) -> bool:
        """Give the role to the thread standing by, if one does; then run the job here."""
        with self._lock:
            if not self._standing_by or self._stopped:
                return False
            self._standing_by = False
            self.running[threading.get_ident()] = threading.current_thread()
        self._baton.release()
        return True

    def ran_here(self) -> bool:
        """Whether this thread passed its role on to run a job (until ``take_back``)."""
        return threading.get_ident() in self.running

    def take_back(self) -> bool:
        """After a job run here: stand by until the role comes back; False once stopped."""
        with self._lock:
            self.running.pop(threading.get_ident(), None)
            if self._stopped:
                return False
            self._standing_by = True
        return self.stand_by()

    def stand_by(self) -> bool:
        """Wait for the role (the second thread starts here); False once stopped."""
        self._baton.acquire()
        with self._lock:
            return not self._stopped

    def stop(self) -> None:
        """Wake the thread standing by, if any, to leave (and every later ``stand_by``)."""
        with self._lock:
            self._stopped = True
        self._baton.release(2)
