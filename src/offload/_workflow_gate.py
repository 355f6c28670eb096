"""The workflow gate: a step runs once the jobs it depends on succeeded, fed their results.

Every step of a workflow is a message from the start (``offload._workflows``
enqueues them all in one batch); its ``meta`` says what it waits for:

- ``offload.after``: the ids of the jobs it runs after, comma separated;
- ``offload.feed``: ``"first"``: the (one) dependency's result comes first
  in its arguments (a chain's step); ``"list"``: the list of their results,
  in order (a chord's callback, a group's collector); absent: nothing fed
  (``depends_on=``);
- ``offload.next``: the ids of the steps that run after it (see below);
- ``offload.since``: when the workflow was enqueued (the poll's backoff).

The runner sends a message with ``offload.after`` through the app's gated
chain, whose first middleware is the ``Gate``. Before the attempt it reads
the dependencies' states in one ``inspector.job_states`` call:

- all succeeded: the step runs, its results fed (one ``inspector.job``
  each, to read them);
- one failed: the step fails, not run and not retried, with that job's own
  error (its stored record, a line saying why prepended to the traceback);
  so does every step after it, and the workflow's handle raises the failed
  step's exception;
- one cancelled: the step is cancelled, not run;
- otherwise: ``offload.Delay``: back to the broker without spending an
  attempt, polled again after a wait that grows with the workflow's age
  (half of it, from 0.05 s up to 2 s): the latency between two steps.

``offload retry`` of a failed (or cancelled) step resumes the workflow: a
step that succeeds queues again, before its own outcome is recorded, the
steps after it (``offload.next``) that had failed or been cancelled because
of it, and they run as if nothing had happened.

An in-process app (memory broker) keeps no finished jobs: there the gate
reads the dependencies' handles, which the app gives it before it enqueues.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._brokers import Inspector
from ._clock import Clock
from ._context import JobContext, feed
from ._errors import BrokerUnavailable, TaskFailed, TaskNotFound
from ._handle import Handle
from ._message import ErrorInfo, State
from ._middleware import Delay, Middleware, Skip
from ._results import rebuild_error
from ._runner import AFTER
from ._serializers import JsonSerializer, Serializer

log = logging.getLogger(__name__)

FEED = "offload.feed"
FED = "offload.fed"
"""How many of a step's dependencies (the first ones) feed it; absent: all of them."""
NEXT = "offload.next"
SINCE = "offload.since"

MIN_POLL = 0.05
MAX_POLL = 2.0
"""Seconds between two looks at a waiting step's dependencies: from MIN_POLL,
growing with the workflow's age, up to MAX_POLL."""

_ARGS = JsonSerializer(modules=lambda module: False)
"""Decodes the arguments of a stored exception (plain data only)."""


def poll_after(now: float, since: float) -> float:
    """Seconds until a step that waits since ``since`` looks again: half its wait so far,
    so that the looks double their spacing, within [MIN_POLL, MAX_POLL]."""
    return min(MAX_POLL, max(MIN_POLL, (now - since) / 2))


class Gate(Middleware):
    """Holds each workflow step until its dependencies ended (see the module's docstring)."""

    def __init__(
        self,
        clock: Clock,
        inspector: Callable[[], Inspector],
        serializer: Serializer | None,
    ) -> None:
        self._clock = clock
        self._inspector = inspector
        self._serializer = serializer
        self._lock = threading.Lock()
        self._local: dict[str, tuple[Handle[Any], ...]] = {}
        """In-process apps: a waiting step's id -> its dependencies' handles."""

    def hold(self, job_id: str, handles: Sequence[Handle[Any]]) -> None:
        """In-process: ``job_id`` waits for ``handles`` (given before it is enqueued)."""
        with self._lock:
            self._local[job_id] = tuple(handles)

    def forget(self, job_id: str) -> None:
        """In-process: ``job_id`` ended or was cancelled; drop what it waited for."""
        with self._lock:
            self._local.pop(job_id, None)

    def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
        meta = job.meta
        self._admit_or_wait(job, meta)
        result = call_next()
        self._resume(job, meta)
        return result

    async def aexecute(self, job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        meta = job.meta
        await asyncio.to_thread(self._admit_or_wait, job, meta)  # the broker, off the loop
        result = await call_next()
        await asyncio.to_thread(self._resume, job, meta)
        return result

    def _admit_or_wait(self, job: JobContext, meta: Any) -> None:
        try:
            self._admit(job, meta)
        except BrokerUnavailable as error:  # an outage is no reason to fail the step: wait
            log.warning(
                "offload: could not read the dependencies of job %s (%s); it waits %gs",
                job.id,
                error,
                MAX_POLL,
            )
            raise Delay(MAX_POLL) from None

    # -- before the attempt ------------------------------------------------------------

    def _admit(self, job: JobContext, meta: Any) -> None:
        """Return when the step may run (its inputs fed); raise ``Delay`` or ``Skip``."""
        after = [job_id for job_id in meta.get(AFTER, "").split(",") if job_id]
        mode = meta.get(FEED)
        if self._serializer is None:
            results = self._local_results(job.id, after)
        else:
            results = self._stored_results(job.id, after, mode is not None)
        if results is None:
            try:
                since = float(meta.get(SINCE, "0"))
            except ValueError:
                since = 0.0
            raise Delay(poll_after(self._clock.now(), since))
        try:
            count = int(meta.get(FED, len(after)))  # the first ones feed: depends_on= does not
        except ValueError:
            count = len(after)
        if mode == "first" and results:
            feed(job, (results[0],))
        elif mode == "list":
            feed(job, (list(results[:count]),))

    def _local_results(self, job_id: str, after: list[str]) -> list[Any] | None:
        with self._lock:
            handles = self._local.get(job_id, ())
        if len(handles) != len(after):
            raise Skip(TaskNotFound(f"job {job_id}'s dependencies are not known here"))
        for handle in handles:
            if handle.cancelled():
                self.forget(job_id)
                raise Skip()
            if handle.done() and handle.exception() is not None:
                self.forget(job_id)
                raise Skip(handle.exception())
        if not all(handle.done() for handle in handles):
            return None
        self.forget(job_id)
        return [handle.result() for handle in handles]

    def _stored_results(self, job_id: str, after: list[str], fed: bool) -> list[Any] | None:
        inspector = self._inspector()
        states = inspector.job_states(after) if after else {}
        for dependency in after:
            state = states.get(dependency)
            if state is None:
                raise Skip(_missing(job_id, dependency))
            if state is State.FAILED:
                raise _failed(inspector, job_id, dependency)
            if state is State.CANCELLED:
                raise Skip()
        if any(states[dependency] is not State.SUCCEEDED for dependency in after):
            return None
        if not fed:
            return []
        assert self._serializer is not None
        results = []
        for dependency in after:
            info = inspector.job(dependency)
            if info is None:  # pruned between the two reads
                raise Skip(_missing(job_id, dependency))
            data = info.result
            results.append(None if data is None else self._serializer.decode(data))
        return results

    # -- after a successful attempt --------------------------------------------------------

    def _resume(self, job: JobContext, meta: Any) -> None:
        """Queue again the steps after this one that ended because of it (``offload retry``)."""
        following = [job_id for job_id in meta.get(NEXT, "").split(",") if job_id]
        if not following or self._serializer is None:
            return
        try:
            inspector = self._inspector()
            states = inspector.job_states(following)
            for job_id, state in states.items():
                if state in (State.FAILED, State.CANCELLED):
                    inspector.retry(job_id)
        except BrokerUnavailable as error:  # the step succeeded: that is what it reports
            log.warning(
                "offload: job %s succeeded, but the steps after it could not be checked (%s); "
                "if they had failed because of it, `offload retry` them: %s",
                job.id,
                error,
                ", ".join(following),
            )


def _missing(job_id: str, dependency: str) -> TaskNotFound:
    return TaskNotFound(
        f"job {job_id} depends on job {dependency}, which is not in the broker (its result "
        "was pruned after its result_ttl, or it was purged, or it never existed); it did "
        "not run"
    )


def _failed(inspector: Inspector, job_id: str, dependency: str) -> Skip:
    """Fail ``job_id`` with the failed dependency's own error, without running it."""
    info = inspector.job(dependency)
    record = None if info is None else info.error
    if record is None:
        record = ErrorInfo(f"{TaskFailed.__module__}.TaskFailed", f"job {dependency} failed", "")
    why = f"job {job_id} did not run: job {dependency}, which it depends on, failed:\n"
    stored = ErrorInfo(record.type, record.message, why + record.traceback, record.args)
    error = rebuild_error(record, _ARGS.decode)
    return Skip(error, stored)
