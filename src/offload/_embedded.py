"""The worker an app runs inside its own process, and what happens to it at exit.

In-process apps always have one (started by the first call); durable apps
have one with ``embedded_worker=True``. At interpreter exit, unfinished
in-process calls are waited for or cancelled (``on_exit``); an embedded
durable worker lets running tasks finish briefly and releases the rest to
the broker, for the next start or any other worker.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

from ._errors import ConfigurationError
from ._handle import Handle, HandleMap, cancel_unstarted
from ._worker import Worker

log = logging.getLogger(__name__)

OnExit = Literal["wait", "cancel"]


class EmbeddedWorker:
    """Starts the app's worker on first use and stops it once."""

    EXIT_GRACE = 5.0
    """Seconds an embedded durable worker lets running tasks finish at exit."""

    def __init__(
        self,
        make: Callable[[], Worker],
        handles: HandleMap,
        *,
        durable: bool,
        on_exit: OnExit,
        describe: Callable[[], str],
    ) -> None:
        self._make = make
        self._handles = handles
        self._durable = durable
        self._on_exit = on_exit
        self._describe = describe
        self.worker: Worker | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> Worker:
        """The running worker, started now if this is the first call."""
        worker = self.worker
        if worker is not None:
            return worker
        with self._lock:
            if self._closed:
                raise ConfigurationError(f"{self._describe()} was shut down; create a new App")
            if self.worker is None:
                worker = self._make()
                worker.start()
                atexit.register(self._at_exit)
                self.worker = worker
            return self.worker

    def stop(self, wait: bool) -> None:
        with self._lock:
            worker, self.worker = self.worker, None
            self._closed = True
        atexit.unregister(self._at_exit)  # else atexit keeps every app ever started alive
        if worker is not None:
            worker.stop(wait)

    def cancel_pending(self) -> int:
        return sum(1 for handle in self._unfinished() if cancel_unstarted(handle))

    def pending(self) -> int:
        return len(self._unfinished())

    def _unfinished(self) -> list[Handle[Any]]:
        return [handle for handle in list(self._handles.values()) if not handle.done()]

    def _at_exit(self) -> None:
        if self._closed:
            return
        worker = self.worker
        if self._durable and worker is not None:
            # The work is stored: finish what runs (briefly), release the rest
            # for the next start of this program or any other worker.
            released = worker.drain(grace=self.EXIT_GRACE)
            if released:
                log.info(
                    "offload: released %d running tasks at exit; they will run again", released
                )
            return
        if self._on_exit == "cancel":
            cancelled = self.cancel_pending()
            if cancelled:
                log.info("offload: cancelled %d unfinished tasks at exit", cancelled)
            return
        self._wait_at_exit()

    def _wait_at_exit(self) -> None:
        try:
            if self.pending():
                log.info(
                    "offload: waiting for %d tasks to finish (Ctrl-C to abandon)", self.pending()
                )
            while concurrent.futures.wait(self._unfinished(), timeout=0.1).not_done:
                pass
        except KeyboardInterrupt:
            left = self.pending()
            self.cancel_pending()
            log.warning("offload: interrupted at exit; %d unfinished tasks abandoned", left)
