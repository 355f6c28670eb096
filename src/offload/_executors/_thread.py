"""A thread pool that can grow and shrink while it runs.

Threads start on demand up to the pool's size, like the standard
library's ThreadPoolExecutor, and leave when the size drops, after their
current call. No private attributes of ``concurrent.futures`` are used.

Accounting, kept exact with one lock on the slow path only: ``_idle``
counts threads blocked in ``get()`` that no call has been promised to yet.
``execute`` promises its call to such a thread (``_idle -= 1``) or starts
a new one. A busy thread takes the next call without the lock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigurationError
from .._joblog import job_fields
from .._locks import TokenLock
from .._runner import Call, invoke
from ._base import Deadlines, Done, Once, Start, timeout_error

log = logging.getLogger(__name__)


class ThreadExecutor:
    """Runs calls on up to ``size`` threads."""

    claims_inline = True
    JOIN_FOR = 5.0
    """Seconds ``shutdown(wait=True)`` waits for the threads to leave."""

    def __init__(
        self,
        size: int,
        start: Start,
        done: Done,
        *,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "offload-thread",
    ) -> None:
        check_size(size)
        self._size = size
        self._start = start
        self._done = done
        self._name = name
        self._queue: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._lock = TokenLock()  # every refill takes it: see ``TokenLock``
        self._threads = 0  # alive
        self._running: set[threading.Thread] = set()  # for shutdown(wait=True) to join
        self._idle = 0  # blocked in get() with no call promised to them
        self._deadlines = Deadlines(clock, f"{name}-deadlines")

    @property
    def size(self) -> int:
        return self._size

    @property
    def threads(self) -> int:
        """Threads alive now (at most ``size`` once shrinking has settled)."""
        return self._threads

    def execute(self, call: Call) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                spawn = self._threads < self._size
                if spawn:
                    self._threads += 1
        self._queue.put(call)
        if spawn:
            self._start_thread()

    def run_here(self, call: Call) -> None:
        """Run ``call`` on the calling thread exactly as a pool thread would (the worker's
        dispatcher does, for a job it claimed while another thread takes its role)."""
        self._run(call)

    def interrupt(self, call: Call) -> bool:
        return False  # a thread cannot be stopped from outside: the task checks

    def resize(self, size: int) -> None:
        check_size(size)
        with self._lock:
            self._size = size
            # Calls already waiting in the queue get the new threads at once.
            missing = max(0, min(self._queue.qsize() - self._idle, size - self._threads))
            self._threads += missing
        for _ in range(missing):
            self._start_thread()
        self._wake_excess()

    def shutdown(self, wait: bool) -> None:
        """Let every thread leave; with ``wait``, return once they have (at most 5 s).

        Threads leave after their current call; one stuck in a call past its
        timeout (threads cannot be stopped) is not waited for beyond that.
        """
        with self._lock:
            self._size = 0
            threads = self._threads
            self._idle = 0
        # One None per thread, not per idle one: an idle count can be stale (a
        # busy thread may take the call meant for an idle one, which then
        # waits uncounted). A None left over after they all left is harmless.
        for _ in range(threads):
            self._queue.put(None)
        if wait:
            deadline = time.monotonic() + self.JOIN_FOR
            for thread in list(self._running):
                if thread is not threading.current_thread():
                    thread.join(max(0.0, deadline - time.monotonic()))

    def _wake_excess(self) -> None:
        """Send idle threads above the size a ``None``, so they notice and leave."""
        with self._lock:
            wake = min(self._idle, max(0, self._threads - self._size))
            self._idle -= wake
        for _ in range(wake):
            self._queue.put(None)

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._running.add(thread)
        thread.start()

    def _work(self) -> None:
        empty, get_nowait, get, run = (
            self._queue.empty,
            self._queue.get_nowait,
            self._queue.get,
            self._run,
        )
        while True:
            if self._threads > self._size and self._leave():
                self._running.discard(threading.current_thread())
                return
            if empty():  # asked first: raising and catching Empty costs more than asking
                if not self._idle_or_leave():
                    self._running.discard(threading.current_thread())
                    return
                call = get()
            else:
                try:
                    call = get_nowait()
                except queue.Empty:  # another thread took it meanwhile: look again
                    continue
            if call is not None:
                run(call)

    def _idle_or_leave(self) -> bool:
        """Count this thread idle before it waits in ``get()``; ``False``: leave instead."""
        with self._lock:
            # Checked again under the lock: a shutdown or shrink since the check
            # in ``_work`` counted this thread as busy and sent it no None, so it
            # would wait in get() for good.
            if self._threads > self._size:
                self._threads -= 1
                return False
            self._idle += 1
            return True

    def _leave(self) -> bool:
        with self._lock:
            if self._threads > self._size:
                self._threads -= 1
                return True
            return False

    def _run(self, call: Call) -> None:
        if not self._start(call):
            return
        if call.timeout is not None:
            self._run_with_deadline(call, call.timeout)
            return
        try:
            result = invoke(call)
        except BaseException as error:  # noqa: BLE001 - reported, as Future does
            self._done(call, None, error)
        else:
            self._done(call, result, None)

    def _run_with_deadline(self, call: Call, timeout: float) -> None:
        once = Once()

        def expire() -> None:
            if once.claim():
                log.warning(
                    "Task %s (id %s) timed out after %gs; its thread cannot be stopped and "
                    "keeps running until the function returns. Use pool='process' for "
                    "tasks that must be killed at their timeout.",
                    call.spec.name,
                    call.delivery.message.id,
                    timeout,
                    extra=job_fields(call.delivery),
                )
                self._done(call, None, timeout_error(call))

        self._deadlines.at(timeout, expire)
        try:
            result = invoke(call)
        except BaseException as error:  # noqa: BLE001
            if once.claim():
                self._done(call, None, error)
        else:
            if once.claim():
                self._done(call, result, None)
            else:
                log.info(
                    "Task %s returned after its timeout; result discarded",
                    call.spec.name,
                    extra=job_fields(call.delivery),
                )


def check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigurationError(f"a pool size must be a positive integer, not {size!r}")
