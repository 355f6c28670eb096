"""What a running job asks of the runner: its progress passed on, its steps recorded.

``JobServices`` is the runner's side of a job context: ``report`` for
``offload.current().progress``, ``recorded``/``record`` for ``offload.step``.

Steps of a durable app's jobs are kept in the broker (``StepStore``),
encoded with the app's serializer, written only while the attempt holds its
lease; an in-process app keeps them in memory, as values, until the job's
final outcome (a retry finds them there).

Progress goes to the job's handle in this process at once (an in-process app, or the
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
from typing import Any

from ._brokers._base import ProgressStore, StepStore
from ._handle import HandleMap
from ._message import Delivery, Progress
from ._serializers import Serializer

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


class JobServices:
    """The runner's ``JobServices`` (see ``offload._context``): progress and steps."""

    def __init__(
        self, inspector: object, handles: HandleMap, serializer: Serializer | None
    ) -> None:
        self.progress = ProgressReporter(inspector, handles)
        self.report = self.progress.report
        self.attempt_ended = self.progress.finished
        """An attempt of the job ended (before its outcome is recorded): what it reported
        is written now. The reporter's own method, not a wrapper: every job calls it."""
        durable = serializer is not None and isinstance(inspector, StepStore)
        self._store: StepStore | None = inspector if durable else None  # type: ignore[assignment]
        self._serializer = serializer
        self._lock = threading.Lock()
        self.in_memory: dict[str, dict[str, Any]] = {}
        """The results of in-process workflow steps: job id: step name: result."""

    def recorded(self, delivery: Delivery, name: str) -> tuple[bool, Any]:
        job_id = delivery.message.id
        if self._store is not None:
            assert self._serializer is not None
            data = self._store.step_result(job_id, name)
            return (False, None) if data is None else (True, self._serializer.decode(data))
        with self._lock:
            steps = self.in_memory.get(job_id)
            if steps is None or name not in steps:
                return False, None
            return True, steps[name]

    def record(self, delivery: Delivery, name: str, value: Any) -> None:
        job_id = delivery.message.id
        if self._store is None:
            with self._lock:
                self.in_memory.setdefault(job_id, {})[name] = value
            return
        assert self._serializer is not None
        data = self._serializer.encode(value, path=f"the result of step {name!r}")
        if not self._store.record_step(delivery, name, data):
            log.warning(
                "offload: step %r of job %s ran, but its lease was lost before the result "
                "was recorded: the job's next run does the step again",
                name,
                job_id,
            )

    def job_ended(self, job_id: str) -> None:
        """The job's outcome is final: forget what was kept in memory for it."""
        if self.in_memory:  # only ever filled by in-process steps: no lock otherwise
            with self._lock:
                self.in_memory.pop(job_id, None)
