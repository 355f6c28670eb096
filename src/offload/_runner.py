"""The one path that runs a message and decides its outcome.

Every mode goes through here: in-process or durable, thread, process or
event loop. ``begin`` turns a delivery into a ``Call`` for an executor;
``invoke`` (or ``ainvoke``) is where every executor runs it: the job
context set, the middleware's ``execute`` hooks around it; ``finish``
takes what the call returned or raised and decides: success, another
attempt later (the message waits in the broker, never in memory), a wait
asked for by ``offload.Delay``, or a final failure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ._brokers import Broker
from ._brokers._base import Inspectable, Limited
from ._brokers._claiming import AckAndClaim
from ._clock import Clock
from ._context import CURRENT, JobContext, fed
from ._errors import (
    MessageRejected,
    NotSerializable,
    OffloadError,
    PayloadRejected,
    TaskNotFound,
)
from ._handle import Handle, HandleMap
from ._job_services import JobServices
from ._joblog import finished as log_finished
from ._joblog import info_enabled, job_fields
from ._limits import Limiter, Limits
from ._message import FINISHED_STATES, Delivery, ErrorInfo, Message, Outcome, State, storable
from ._middleware import Chain, Delay, Skip
from ._retry import RetryPolicy
from ._serializers import JsonSerializer, PickleSerializer, Serializer, decode_call

log = logging.getLogger(__name__)

POOLS = ("thread", "process", "async")

AFTER = "offload.after"
"""The meta key of a workflow step: the ids of the jobs it runs after (comma separated).
A message that carries it runs through the app's gated chain (the workflow gate
first); any other pays one test for it."""
NO_RETRIES = RetryPolicy()


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a worker needs to know about a task to run it."""

    name: str
    fn: Callable[..., Any]
    pool: str | None = None
    """None: the worker's default pool (thread, unless ``offload worker --pool``)."""
    policy: RetryPolicy = NO_RETRIES
    timeout: float | None = None
    queue: str = "default"
    import_path: str | None = None
    """``module:qualname``, for pools that run the function in another process."""
    priority: int = 0
    max_deliveries: int | None = None
    result_ttl: float | None = None
    limits: Limits | None = None
    """Rate and concurrency limits (``offload._limits``); None: none, and no cost."""


@dataclass(slots=True)
class Call:
    """One attempt of a task, ready for an executor."""

    spec: TaskSpec
    delivery: Delivery
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None
    job: JobContext
    chain: Chain | None = None
    """The app's middleware, when any wraps attempts; None: the function runs bare."""
    started: float | None = None
    """``time.perf_counter()`` as it started (``Runner.start``), read only when INFO is on."""


@dataclass(slots=True)
class Refill:
    """A claim for the slot a finishing call frees, made with its ack (``AckAndClaim``).

    The worker reserves the call's slot for it and passes it to ``Runner.finish``;
    a final outcome (success, failure, cancellation, skip) is then recorded with
    ``ack_and_claim``, one round trip for both. A nack (a retry, a ``Delay``)
    leaves it unused: the worker then claims the usual way.
    """

    queues: Sequence[str] | None
    lease: float
    claimed: list[Delivery] | None = None
    """What the ack claimed (for at most one slot); None: no claim was made."""


def invoke(call: Call, run: Callable[[], Any] | None = None) -> Any:
    """Run one attempt here: the job context set, the ``execute`` middleware around it.

    Every executor calls this (or ``ainvoke``) instead of the function.
    ``run`` replaces the plain call where the function runs elsewhere (the
    process pool's round trip to its child).
    """
    token = CURRENT.set(call.job)
    try:
        chain = call.chain
        if chain is None and run is None:  # the hot path: one test
            return call.spec.fn(*call.args, **call.kwargs)
        if run is None:
            spec, job, args, kwargs = call.spec, call.job, call.args, call.kwargs

            def run() -> Any:
                return spec.fn(*fed(job, args), **kwargs)

        return run() if chain is None else chain.execute(call.job, run)
    finally:
        CURRENT.reset(token)


async def ainvoke(call: Call) -> Any:
    """``invoke`` for an ``async def`` task, on the event loop (each run its own asyncio task)."""
    CURRENT.set(call.job)  # this asyncio task's own copy of the context
    chain = call.chain
    if chain is None:
        return await call.spec.fn(*call.args, **call.kwargs)
    spec, job, args, kwargs = call.spec, call.job, call.args, call.kwargs

    async def run() -> Any:
        return await spec.fn(*fed(job, args), **kwargs)

    return await chain.aexecute(call.job, run)


def job_context(delivery: Delivery) -> JobContext:
    message = delivery.message
    return JobContext(message.id, message.task, delivery.attempt, message.queue, message.meta)


class Runner:
    """Decides the outcome of each attempt and records it."""

    def __init__(
        self,
        broker: Broker,
        registry: dict[str, TaskSpec],
        clock: Clock,
        handles: HandleMap,
        *,
        serializer: Serializer | None = None,
        resolve: Callable[[str], TaskSpec | None] | None = None,
        jitter_source: Callable[[], float] = random.random,
        chain: Chain | None = None,
        gated: Chain | None = None,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.clock = clock
        self.handles = handles
        self.serializer = serializer
        """Set for durable brokers: arguments arrive encoded, results leave encoded."""
        self.resolve = resolve or registry.get
        """Finds a task by name, importing it if need be (the app's resolve_task)."""
        self.jitter_source = jitter_source
        self.chain = chain
        self.interrupt: Callable[[Handle[Any]], bool] | None = None
        """Set by the worker of this process: stops a running call (``handle.cancel()``)."""
        """The app's middleware; None when it has none (the common case: no work per call)."""
        self._wrapping = chain if chain is not None and chain.wraps_execution else None
        self._gated = gated
        """The chain for workflow steps (``AFTER`` in their meta): the gate, then the app's."""
        inspector = broker.inspector if isinstance(broker, Inspectable) else None
        self.services = JobServices(inspector, handles, serializer)
        self.acks_and_claims = broker if isinstance(broker, AckAndClaim) else None
        """The broker, if it claims with an ack (the worker then passes ``Refill``s)."""
        self._limited: Chain | None = None  # made when the first task with limits runs

    def begin(self, delivery: Delivery) -> Call | None:
        """The call to make for ``delivery``; ``None`` if there is nothing to run."""
        message = delivery.message
        if delivery.defect is not None:
            self._fail(delivery, _defective(message, delivery.defect))
            return None
        try:
            spec = self.registry.get(message.task) or self.resolve(message.task)
        except Exception as error:  # noqa: BLE001 - not allowed, or an included module is broken
            self._fail(delivery, _unresolvable(message.task, error))
            return None
        if spec is None:
            self._fail(delivery, _unknown_task(message.task, self.registry))
            return None
        args, kwargs = message.args, message.kwargs
        if message.payload is not None:
            try:
                serializer = self._serializer()
                if isinstance(serializer, PickleSerializer):
                    serializer.check_seal(message)
                args, kwargs = decode_call(serializer, message.payload)
            except Exception as error:  # noqa: BLE001 - any decoding failure is final
                self._fail(delivery, _undecodable(message.task, error))
                return None
        timeout = spec.timeout if message.timeout is None else message.timeout
        job = JobContext(
            message.id,
            message.task,
            message.attempt,  # delivery.attempt, without a property call
            message.queue,
            message.meta,
            services=self.services,
            delivery=delivery,
        )
        if spec.limits is None and message.meta is None:  # most calls: the app's chain
            return Call(spec, delivery, args, kwargs, timeout, job, self._wrapping)
        return Call(spec, delivery, args, kwargs, timeout, job, self._chain_for(spec, message))

    def _chain_for(self, spec: TaskSpec, message: Message) -> Chain | None:
        """The middleware around an attempt: the app's (None: none, the hot path); for a
        task with limits, the ``Limiter`` first; for a workflow step, the gate before all."""
        chain = self._wrapping if spec.limits is None else self._limited or self._limiting()
        meta = message.meta
        if meta is not None and AFTER in meta and self._gated is not None:
            gate = self._gated.middleware[0]
            return (
                self._gated if spec.limits is None else Chain([gate, *self._limiting().middleware])
            )
        return chain

    def _limiting(self) -> Chain:
        """The middleware of tasks with limits: ``Limiter`` outermost, then the app's."""
        if self._limited is None:
            broker = self.broker
            limits = broker.limits if isinstance(broker, Limited) else None
            limiter = Limiter(limits, self._limits_of)
            self._limited = Chain([limiter, *(self.chain.middleware if self.chain else ())])
        return self._limited

    def _limits_of(self, task: str) -> Limits | None:
        spec = self.registry.get(task)
        return None if spec is None else spec.limits

    def cancelled(self, call: Call, refill: Refill | None = None) -> None:
        """Record ``call``'s job cancelled while it ran (at once for a thread, which runs on)."""
        delivery = call.delivery
        outcome = Outcome.cancelled()
        if not self._ack(delivery, outcome, refill):
            return  # recorded already (a thread's job, when its function returns), or lost
        handle = self.handles.pop(delivery.message.id, None)
        if handle is not None:
            handle.cancel_locally(running=True)
        self._notify(delivery, outcome, call.job)
        log_finished(delivery, State.CANCELLED, call.started)

    def _serializer(self) -> Serializer:
        if self.serializer is None:
            raise PayloadRejected("an encoded message reached an app without a serializer")
        return self.serializer

    def start(self, call: Call) -> bool:
        """Mark the call's handle running; ``False`` if it was cancelled meanwhile."""
        delivery = call.delivery
        if info_enabled():  # the one check a job pays when INFO is off: no clock read
            call.started = time.perf_counter()
        handle = self.handles.get(delivery.message.id)
        if handle is None:
            return True
        if handle.set_running_or_notify_cancel():
            if self.interrupt is not None:
                handle._interrupt = self.interrupt  # handle.cancel() stops it while it runs
            return True
        outcome = Outcome.cancelled()
        if self.broker.ack(delivery, outcome):
            self.handles.pop(delivery.message.id, None)
            self._notify(delivery, outcome)
            log_finished(delivery, State.CANCELLED, None)
        return False

    def finish(
        self, call: Call, result: Any, error: BaseException | None, refill: Refill | None = None
    ) -> None:
        """Record how ``call`` ended: its result, or its exception.

        ``refill``: a final outcome also claims for the freed slot (see ``Refill``).
        """
        delivery = call.delivery
        self.services.attempt_ended(delivery.message.id)  # before the ack: writes need the lease
        if refill is not None and refill.claimed is not None:
            refill = None  # claimed by an earlier try (that failed after): never claim twice
        if call.job.cancelled:  # stopped because someone cancelled it: no retry follows
            self.cancelled(call, refill)
            return
        if error is None:
            self._succeed(call, result, refill)
            return
        if isinstance(error, Delay):
            self._delay(call, error, refill)
            return
        if isinstance(error, Skip):
            self._skip(call, error, refill)
            return
        delay = call.spec.policy.retry_delay(
            error, delivery.attempt, delivery.message.retries, self.jitter_source
        )
        if delay is not None and self._may_deliver_again(delivery):
            self._retry(call, error, delay)
        else:
            self._fail(delivery, error, call.started, refill=refill)

    # -- outcomes --------------------------------------------------------------

    def _ack(self, delivery: Delivery, outcome: Outcome, refill: Refill | None) -> bool:
        """``ack``; with a ``refill``, claiming for the freed slot in the same round trip."""
        if refill is None:
            return self.broker.ack(delivery, outcome)
        broker = cast(AckAndClaim, self.acks_and_claims)  # a refill comes only if set
        acked, refill.claimed = broker.ack_and_claim(
            delivery, outcome, refill.queues, 1, refill.lease
        )
        return acked

    def _succeed(self, call: Call, result: Any, refill: Refill | None) -> None:
        delivery = call.delivery
        outcome = Outcome(State.SUCCEEDED, result)
        if self.serializer is not None:
            try:
                outcome.payload = self.serializer.encode(result, path="result")
            except NotSerializable as unencodable:
                self._fail(delivery, unencodable, refill=refill)
                return
        acked = (
            self.broker.ack(delivery, outcome)
            if refill is None
            else self._ack(delivery, outcome, refill)
        )  # ``self._ack``, inlined for the common case: every call succeeds this way
        if acked:
            self._notify(delivery, outcome, call.job)
            if call.started is not None:  # INFO was on as it started
                log_finished(delivery, State.SUCCEEDED, call.started)
            # The caller is woken last, as for a failure: its thread then does
            # not compete for the GIL with this one's bookkeeping, and the
            # outcome hooks and the log line come before the result is seen.
            handle = self.handles.pop(delivery.message.id, None)
            if handle is not None:
                # Not `with _ALREADY_SETTLED`: every call takes this path, and
                # suppress() is two Python calls more. Cancelled meanwhile: it stays so.
                try:  # noqa: SIM105
                    handle.set_result(result)
                except concurrent.futures.InvalidStateError:
                    pass

    def _may_deliver_again(self, delivery: Delivery) -> bool:
        limit = delivery.message.max_deliveries
        return limit is None or delivery.attempt < limit

    def _delay(self, call: Call, request: Delay, refill: Refill | None) -> None:
        """Back to the broker until ``request``'s time, as if never claimed (no attempt counted)."""
        delivery = call.delivery
        try:
            eta = request.eta(self.clock.now())
        except OffloadError as error:
            self._fail(delivery, error, refill=refill)
            return
        handle = self.handles.get(delivery.message.id)
        if handle is not None:
            handle.set_waiting()  # before the nack, as for a retry
        if self.broker.nack(delivery, eta, penalty=False):
            self._notify(delivery, Outcome(State.QUEUED), call.job)

    def _skip(self, call: Call, skip: Skip, refill: Refill | None) -> None:
        """End the job without running it (a workflow step whose dependency failed or
        was cancelled): cancelled, or failed with ``skip.error`` and no retry."""
        delivery = call.delivery
        if skip.error is not None:
            self._fail(delivery, skip.error, info=skip.info, ran=False, refill=refill)
            return
        outcome = Outcome.cancelled()
        if self._ack(delivery, outcome, refill):
            handle = self.handles.pop(delivery.message.id, None)
            if handle is not None:
                handle.set_waiting()  # it never ran: cancellable as a queued call
                handle.cancel_locally()
            self._notify(delivery, outcome, call.job)

    def _notify(self, delivery: Delivery, outcome: Outcome, job: JobContext | None = None) -> None:
        services = self.services
        # State.finished without a property call, and job_ended only if it has work.
        if services.in_memory and outcome.state in FINISHED_STATES:
            services.job_ended(delivery.message.id)
        chain = self.chain
        if chain is not None:
            chain.outcome(job or job_context(delivery), outcome)

    def _retry(self, call: Call, error: BaseException, delay: float) -> None:
        delivery = call.delivery
        message = delivery.message
        retry_at = self.clock.now() + delay  # read before the handle says "retrying"
        handle = self.handles.get(message.id)
        if handle is not None:
            # Before the nack: once back in the broker (delay 0) the next
            # attempt may start at once, and must not be marked retrying after.
            handle.set_retrying()
        info = error_info(error) if self.serializer is not None else None
        # Logged before the nack: once back in the broker the next attempt may
        # run (and log) at once, and this line must come before its lines.
        log_finished(delivery, State.RETRYING, call.started, error, retry_in=delay)
        if not self.broker.nack(delivery, retry_at, error=info):
            return
        self._notify(delivery, Outcome(State.RETRYING, error=error), call.job)

    def _fail(
        self,
        delivery: Delivery,
        error: BaseException,
        started: float | None = None,
        *,
        info: ErrorInfo | None = None,
        ran: bool = True,
        refill: Refill | None = None,
    ) -> None:
        message = delivery.message
        outcome = Outcome.failure(error)
        if self.serializer is not None:
            outcome.error_info = info or error_info(error)
        if not self._ack(delivery, outcome, refill):
            return
        self._notify(delivery, outcome)
        handle = self.handles.pop(message.id, None)
        if handle is not None:
            # The caller holds the handle: it raises there, and is logged
            # if nobody ever looks (Handle.__del__). Here, the INFO line only.
            with _ALREADY_SETTLED:
                handle.set_exception(error)
            if started is not None:
                log_finished(delivery, State.FAILED, started)
            return
        if not ran:  # a workflow step whose dependency failed: that one logged its traceback
            log.warning(
                "Job %s (task %.200r) did not run: a job it depends on failed (%r)",
                message.id,
                message.task,
                error,
                extra=job_fields(delivery),
            )
            return
        if isinstance(error, REFUSALS):  # nothing ran: offload's traceback would be noise
            log.error(
                "Job %s (task %.200r) dead-lettered, nothing ran: %s",
                message.id,
                message.task,
                error,
                extra=job_fields(delivery),
            )
            return
        log_finished(delivery, State.FAILED, started, error)


def _unknown_task(name: str, registry: dict[str, TaskSpec]) -> TaskNotFound:
    known = ", ".join(sorted(registry)[:20]) or "none"
    return TaskNotFound(
        f"no task named {name[:200]!r} is declared here (tasks known to this worker: "
        f"{known}). Start the worker with the module that declares it (offload worker "
        "module:app), or add that module to the app's include=, or check producer and "
        "worker run the same code version"
    )


def _unresolvable(name: str, error: Exception) -> OffloadError:
    if isinstance(error, OffloadError):
        return error  # TaskNotAllowed: it says why and what to do
    return TaskNotFound(
        f"the task {name[:200]!r} could not be looked up: importing an included module "
        f"failed ({type(error).__name__}: {error}); fix that module and restart the worker"
    )


# A durable app in the worker's process may settle a handle from the broker
# (its result watcher) a moment before the worker does: the same outcome.
_ALREADY_SETTLED = contextlib.suppress(concurrent.futures.InvalidStateError)

REFUSALS = (TaskNotFound, MessageRejected, PayloadRejected)
"""What the runner raises for a message it will not run: it is dead-lettered with the reason."""

_ARGS = JsonSerializer(max_size=65_536, modules=lambda module: False)
"""Encodes an exception's args for the producer to rebuild it: plain data only."""


def error_info(error: BaseException) -> ErrorInfo:
    """The record of a task's exception, with its arguments when they encode.

    An argument that does not encode travels as its text (``URLError``'s
    reason, an exception itself), so the rebuilt exception reads the same.
    """
    args = error.args if type(error.args) is tuple else ()
    try:
        data: bytes | None = _ARGS.encode(list(args), path="args")
    except Exception:  # noqa: BLE001 - some argument does not encode
        try:
            data = _ARGS.encode([_encodable_or_text(arg) for arg in args], path="args")
        except Exception:  # noqa: BLE001 - too large: the message travels alone
            data = None
    info = ErrorInfo.of(error, None if data is None else data.decode("utf-8"))
    if isinstance(error, REFUSALS):
        info.traceback = ""  # raised by offload before anything ran: the reason says it all
    return info


def _encodable_or_text(value: object) -> object:
    try:
        _ARGS.encode(value)
    except Exception:  # noqa: BLE001 - anything a user's object does
        return storable(str(value))
    return value


def _defective(message: Message, defect: str) -> MessageRejected:
    return MessageRejected(
        f"job {message.id} (task {message.task!r}) cannot be run: {defect}. Nothing of it "
        "ran. Something other than this offload version wrote or changed it in the broker; "
        "enqueue the call again with offload, and check who else writes to the broker"
    )


def _undecodable(task: str, error: Exception) -> PayloadRejected:
    return PayloadRejected(
        f"the arguments of this {task!r} job cannot be decoded ({type(error).__name__}: "
        f"{error}); producer and worker must use the same serializer (and pickle key), "
        "and the same versions of any classes passed as arguments"
    )
