"""Where what a task reports of its progress goes (``offload.current().progress``).

To the job's handle in this process at once (an in-process app, or the
embedded worker of a durable one), and to the broker if it keeps progress
(``ProgressStore``), a few times a second per job at most: a task may report
in a tight loop without writing to the broker each time. One thread, started
on the first report, does the writes, so a task (on the event loop too)
never waits for the broker; what is pending when the attempt ends is written
then, before the outcome.
"""

from __future__ import annotations

import logging
import threading
import time

from ._brokers._base import ProgressStore
from ._handle import HandleMap
from ._message import Delivery, Progress

log = logging.getLogger(__name__)


class ProgressReporter:
    """Takes the progress of a runner's jobs and passes it on."""

    INTERVAL = 0.25
    """Seconds between two writes of one job's progress to the broker."""

    def __init__(self, inspector: object, handles: HandleMap) -> None:
        self._store = inspector if isinstance(inspector, ProgressStore) else None
        self._handles = handles
        self._lock = threading.Condition()
        self._written: dict[str, float] = {}  # job id: when its progress was last written
        self._pending: dict[str, tuple[Delivery, Progress]] = {}
        self._flusher: threading.Thread | None = None

    def report(self, delivery: Delivery, progress: Progress) -> None:
        """A job reported ``progress`` (its context's ``report``); never waits for the broker."""
        job_id = delivery.message.id
        handle = self._handles.get(job_id)
        if handle is not None:
            handle.report_progress(progress)
        if self._store is None:
            return
        with self._lock:
            self._pending[job_id] = (delivery, progress)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_forever, name="offload-progress", daemon=True
                )
                self._flusher.start()
            self._lock.notify()

    def finished(self, job_id: str) -> None:
        """The job's attempt ended: write what is pending now, and forget the job."""
        if not self._written and not self._pending:  # nobody reported: the common case, no lock
            return
        with self._lock:
            self._written.pop(job_id, None)
            pending = self._pending.pop(job_id, None)
        if pending is not None:
            self._write(*pending)

    def _flush_forever(self) -> None:
        while True:
            due = self._due()
            for delivery, progress in due:
                self._write(delivery, progress)

    def _due(self) -> list[tuple[Delivery, Progress]]:
        """Wait until some pending progress is due; take it."""
        with self._lock:
            while True:
                now = time.monotonic()
                soonest = None
                due = []
                for job_id, pending in list(self._pending.items()):
                    ready_at = self._written.get(job_id, 0.0) + self.INTERVAL
                    if ready_at <= now:
                        due.append(pending)
                        del self._pending[job_id]
                        self._written[job_id] = now
                    elif soonest is None or ready_at < soonest:
                        soonest = ready_at
                if due:
                    return due
                self._lock.wait(None if soonest is None else soonest - now)

    def _write(self, delivery: Delivery, progress: Progress) -> None:
        assert self._store is not None
        try:
            self._store.record_progress(delivery, progress)
        except Exception as error:  # noqa: BLE001 - progress is news, never the job's failure
            log.warning(
                "offload: could not store the progress of job %s (%s); the job goes on",
                delivery.message.id,
                error,
            )
