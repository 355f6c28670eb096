"""A thread pool that can grow and shrink while it runs.

Threads start on demand up to the pool's size, like the standard
library's ThreadPoolExecutor, and leave when the size drops, after their
current call. No private attributes of ``concurrent.futures`` are used.
"""

from __future__ import annotations

import logging
import queue
import threading

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigurationError
from .._runner import Call
from ._base import Deadlines, Done, Once, report, timeout_error

log = logging.getLogger("offload")

_Item = tuple[Call, Done] | None  # None wakes an idle thread to re-check the size


class ThreadExecutor:
    """Runs calls on up to ``size`` threads."""

    def __init__(
        self,
        size: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "offload-thread",
    ) -> None:
        _check_size(size)
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # alive
        self._idle = 0  # alive and waiting for work
        self._queued = 0  # calls in the queue, not yet picked up
        self._deadlines = Deadlines(clock, f"{name}-deadlines")
        self._shutdown = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def threads(self) -> int:
        """Threads alive now (at most ``size`` once shrinking has settled)."""
        return self._threads

    def execute(self, call: Call, done: Done) -> None:
        with self._lock:
            self._queued += 1
            spawn = self._queued > self._idle and self._threads < self._size
            if spawn:
                self._threads += 1
        self._queue.put((call, done))
        if spawn:
            self._start_thread()

    def resize(self, size: int) -> None:
        _check_size(size)
        with self._lock:
            self._size = size
            excess = self._threads - size
            # Threads for calls already queued, now that more may run at once.
            missing = max(0, min(self._queued - self._idle, size - self._threads))
            self._threads += missing
        for _ in range(max(0, excess)):
            self._queue.put(None)  # wake idle threads so they notice and leave
        for _ in range(missing):
            self._start_thread()

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            self._shutdown = True
            self._size = 0
            alive = self._threads
        for _ in range(alive):
            self._queue.put(None)

    def _start_thread(self) -> None:
        threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        get = self._queue.get
        lock = self._lock
        while True:
            with lock:
                if self._threads > self._size:
                    self._threads -= 1
                    return
                self._idle += 1
            item = get()
            with lock:
                self._idle -= 1
                if item is not None:
                    self._queued -= 1
            if item is not None:
                self._run(*item)

    def _run(self, call: Call, done: Done) -> None:
        if call.timeout is None:
            try:
                result = call.spec.fn(*call.args, **call.kwargs)
            except BaseException as error:  # noqa: BLE001 - reported, as Future does
                report(done, call, None, error)
            else:
                report(done, call, result, None)
            return
        self._run_with_deadline(call, done, call.timeout)

    def _run_with_deadline(self, call: Call, done: Done, timeout: float) -> None:
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
                    extra={"task": call.spec.name, "task_id": call.delivery.message.id},
                )
                report(done, call, None, timeout_error(call))

        self._deadlines.at(timeout, expire)
        try:
            result = call.spec.fn(*call.args, **call.kwargs)
        except BaseException as error:  # noqa: BLE001
            if once.claim():
                report(done, call, None, error)
        else:
            if once.claim():
                report(done, call, result, None)
            else:
                log.info("Task %s returned after its timeout; result discarded", call.spec.name)


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigurationError(f"a pool size must be a positive integer, not {size!r}")
