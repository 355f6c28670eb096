"""The contract every broker answers: six methods, plus declared capabilities.

A broker stores messages and hands them out under leases. It decides
nothing: whether a failure is retried, and when, is the runner's choice,
passed in as ``nack(delivery, retry_at)``. One test suite
(``tests/integration/contract/``) holds every broker to this page.

Job states, as a broker stores them (``State``):

- ``queued``: claimable once its ``eta`` has come;
- ``running``: claimed under a lease (``Delivery.lease_until``);
- ``retrying``: nacked with an error, claimable again at ``retry_at``;
- ``succeeded`` / ``cancelled``: finished; kept ``result_ttl`` seconds
  (the message's, else the broker's default), then pruned;
- ``failed``: the dead-letter set, kept until purged.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from .._errors import WorkerLost
from .._message import Delivery, ErrorInfo, JobInfo, Message, Outcome, Progress, State


class Lease(enum.Enum):
    """What renewing a lease found (``Broker.extend``).

    A cancellation request rides the same heartbeat: ``CANCEL`` is a lease
    still held (and renewed) whose job someone asked to cancel.
    """

    HELD = "held"
    LOST = "lost"
    CANCEL = "cancel"


class Broker(Protocol):
    """Storage and claiming of messages."""

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        """Store ``messages`` in one transaction (all or none); their job ids, in order.

        A message with a ``key`` for which a job is queued, running or
        retrying is not stored: its id in the answer is that job's. Within
        the broker's ``reuse_window`` (seconds, 0 by default) the same holds
        for a job that succeeded with that key (result reuse). A message with
        a ``key_horizon`` also finds a job with its key that finished in any
        state (succeeded, failed, cancelled) less than ``key_horizon``
        seconds ago; the broker raises such a message's ``result_ttl`` to at
        least the horizon (``keep_for_horizon``), so the finished job is
        still there to be found.
        """
        ...

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        """Up to ``limit`` claimable messages, leased for ``lease`` seconds.

        Claimable: queued or retrying messages of ``queues`` (all queues for
        ``None``) whose eta has come, in the order of ``queues``, then by
        priority (higher first), then by eta/age; and running messages whose
        lease lapsed (a worker died). With ``queues=None``, by priority across
        all queues. Each claim adds one to ``attempt`` and issues a new fencing
        ``token``, unique among the broker's jobs (a worker keys what it runs
        by token). A lapsed message that has already
        been delivered ``max_deliveries`` times is not claimed: it becomes
        ``failed`` with an ``ErrorInfo`` that says so.
        """
        ...

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Record the final outcome (succeeded, failed or cancelled).

        Stores ``outcome.payload`` (the encoded result) and
        ``outcome.error_info`` as given (a success after retries clears the
        last error). Returns ``False``, changing nothing, when the
        delivery's token is no longer the job's current one (its lease lapsed
        and another worker claimed it): a slow worker cannot overwrite a newer
        attempt.
        """
        ...

    def nack(
        self,
        delivery: Delivery,
        retry_at: float | None,
        *,
        error: ErrorInfo | None = None,
        penalty: bool = True,
    ) -> bool:
        """Put the message back: claimable at ``retry_at`` (epoch s), or now for ``None``.

        With an ``error`` the job is ``retrying`` and the error is kept as its
        last one; without, ``queued``. ``penalty=False`` releases it as if
        never claimed (a worker stopping): ``attempt`` goes back down by one.
        Fenced like ``ack``.
        """
        ...

    def extend(self, delivery: Delivery, lease: float) -> Lease:
        """Renew the lease of a running message for ``lease`` more seconds; fenced.

        ``Lease.HELD`` if renewed; ``Lease.LOST`` if the delivery's token is no
        longer the job's (its lease lapsed and another worker claimed it, or
        it finished or was deleted): the worker then records nothing for it.
        """
        ...

    def close(self) -> None:
        """Release connections and wake anyone blocked in a wait."""
        ...


class Finished(NamedTuple):
    """A result feed's news of one job: its id, and its outcome when the broker sends it along."""

    id: str
    state: State | None = None
    """``None``: only the id came; the outcome is read from the broker."""
    result: bytes | None = None
    error: ErrorInfo | None = None


@runtime_checkable
class ResultFeed(Protocol):
    """Capability: hear that jobs finished instead of polling for them.

    While someone waits, jobs enqueued through this broker object ask to be
    told of their end (Redis: the ack publishes to the producer's channel;
    PostgreSQL: the ack's own statement sends ``pg_notify``; both carry the
    outcome when it is small). A notification is a hint, at most once: polling the
    broker stays the truth, for what was missed or enqueued elsewhere.
    """

    def wait_for_results(self, timeout: float) -> list[Finished]:
        """Jobs that finished since the last call, waiting up to ``timeout`` for one.

        Called from one thread at a time; starts listening on its first call.
        """
        ...

    def stop_listening(self) -> None:
        """Stop asking for notifications; ends a ``wait_for_results`` at once (any thread)."""
        ...


@runtime_checkable
class Interruptible(Protocol):
    """Capability of a result feed: another thread can end its wait at once, still listening.

    Redis and PostgreSQL have it: a thread blocked on ``handle.result()``
    reads the feed itself instead of waiting for the watcher thread's hop.
    """

    def interrupt_results(self) -> None:
        """End a ``wait_for_results`` blocked in another thread now; nothing is lost."""
        ...


@runtime_checkable
class Transactional(Protocol):
    """Capability: store messages inside the caller's own database transaction.

    ``task.options(connection=conn).delay(...)``: the job exists exactly when
    the caller's transaction commits (PostgreSQL: a psycopg connection to
    the broker's database; SQLite: a ``sqlite3`` connection to its file).
    """

    def enqueue_in(self, messages: Sequence[Message], connection: Any) -> list[str]:
        """``enqueue``, written with ``connection`` and committed with it.

        A connection in autocommit mode commits the batch at once. Raises
        ``ConfigurationError`` for a connection of another kind or database.
        """
        ...


@runtime_checkable
class Migrating(Protocol):
    """Capability: a schema that ``offload migrate`` can bring up as a step of its own."""

    def migrate(self) -> int:
        """Apply missing migrations now (safe from many processes at once); the schema version."""
        ...


@runtime_checkable
class Inspectable(Protocol):
    """Capability: the broker has an inspector (every broker offload ships does)."""

    @property
    def inspector(self) -> Inspector:
        """The broker's inspector: a class of its own, sharing the broker's connection."""
        ...


@runtime_checkable
class ChangeToken(Protocol):
    """Capability of an inspector: tell cheaply whether anything was written since."""

    def change_token(self) -> object | None:
        """A value that changes whenever any job is written by anyone; None: unknown.

        A result watcher that sees the same token twice skips reading the
        states of jobs it already looked at.
        """
        ...


@runtime_checkable
class Inspector(Protocol):
    """Capability: what the CLI, the dashboard and ``app.handle(id)`` read."""

    def job(self, job_id: str) -> JobInfo | None:
        """One job with its state, attempts, result and last error; None if unknown."""
        ...

    def counts(self) -> dict[str, dict[State, int]]:
        """Jobs per queue and state (only non-zero counts need appear)."""
        ...

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        """The states of many jobs in few round trips; unknown ids are left out.

        What a producer waiting on thousands of handles polls.
        """
        ...

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        """Jobs in ``state`` (all for None) of ``queue``, newest first."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or retrying job now; ask a running one to stop (its worker
        hears it at its next lease renewal: ``Lease.CANCEL``); ``False`` if finished."""
        ...

    def retry(self, job_id: str) -> bool:
        """Queue a failed or cancelled job again, now, with ``attempt`` reset to 0."""
        ...

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        """Delete finished jobs in ``state``; how many."""
        ...

    def prune(self) -> int:
        """Delete finished jobs (not failed ones) whose result TTL has passed; how many."""
        ...


class JobPage(NamedTuple):
    """One page of ``JobSearch.search_jobs``: jobs newest first, and where the next page starts."""

    jobs: list[JobInfo]
    cursor: str | None
    """Pass as ``after`` for the next (older) page; ``None``: this was the last page."""


@runtime_checkable
class JobSearch(Protocol):
    """Capability of an inspector: page through jobs by cursor, and search them.

    Keyset paging: a page costs the same at the millionth job as at the
    first (no ``OFFSET``), which is what the dashboard needs. A cursor is
    opaque text that only the inspector that made it reads; a malformed
    one is refused with ``ValueError``. A page may hold fewer than ``limit``
    jobs and still have a cursor (a search that reads at most so many jobs
    a page): follow cursors until one is ``None``.
    """

    def search_jobs(
        self,
        state: State | None = None,
        queue: str | None = None,
        text: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs in ``state`` of ``queue`` (all for None), newest first, older than ``after``.

        ``text`` (None: every job) finds the job whose id it is; if none, the
        jobs whose key it is; if none, the jobs whose task name starts with
        it. (Ids and keys are looked up by index: a search by id or key
        stays fast at any size.)
        """
        ...


class LimitStore(Protocol):
    """What rate and concurrency limits keep in the broker, shared by every worker.

    A limit has a ``name`` (the task, and the call's limit key if any). Each
    method is one atomic step on the broker (a Lua script, a transaction, a
    lock), so the limit holds across worker processes and hosts. A refusal
    answers how long the caller should wait: the moment a token or a slot is
    expected for it, successive refusals being handed successive turns, so
    that waiting messages come back one by one rather than all at once.
    """

    def take_token(self, name: str, interval: float, burst: int) -> float:
        """Take one call of a rate limit of one call per ``interval`` seconds (GCRA).

        Up to ``burst`` calls more than the steady rate may go at once: in any
        window of ``w`` seconds at most ``w / interval + burst`` calls are
        let through. 0.0 when taken; else the seconds to wait (> 0), nothing taken.
        """
        ...

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        """Hold one of ``limit`` slots for the running job ``holder`` (its id).

        A slot is held while its job runs under a live lease: a job that
        finished, or whose lease lapsed (its worker died), frees it without a
        release. A holder asking again gets the slot it holds. 0.0 when held;
        else the seconds to wait until a slot is expected (> 0).
        """
        ...

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        """Give back ``holder``'s slot (nothing if it holds none).

        ``ran``: the holder ran its task (the time it held the slot joins the
        average hold); False: it gave the slot back unused.
        """
        ...


@runtime_checkable
class QueueLag(Protocol):
    """Capability of an inspector: how long each queue's oldest claimable job has waited."""

    def oldest_ready(self) -> dict[str, float]:
        """Per queue, the epoch second its oldest claimable job became claimable (its eta,
        else its creation, else its retry time, or for a running job whose lease lapsed,
        the lease's end); queues with none claimable are left out.

        ``now - value`` is the queue's lag: how far the workers are behind.
        """
        ...


class Throughput(NamedTuple):
    """Jobs that finished in one minute, on one queue (``History.throughput``)."""

    minute: float  # epoch seconds of the minute's start
    queue: str
    succeeded: int
    failed: int  # dead-lettered: failed for good (a retry scheduled is not counted)


@runtime_checkable
class History(Protocol):
    """Capability of an inspector: finished jobs per minute, kept in the broker.

    Written by the broker as jobs finish, so a restarted dashboard keeps it;
    minutes older than a day are dropped.
    """

    def throughput(self, since: float) -> list[Throughput]:
        """The minutes from ``since`` (epoch s) on, oldest first; minutes with none left out."""
        ...


@runtime_checkable
class Limited(Protocol):
    """Capability: the broker keeps rate and concurrency limits (every broker offload ships)."""

    @property
    def limits(self) -> LimitStore:
        """The broker's limit store, sharing the broker's connection."""
        ...


class WorkerInfo(NamedTuple):
    """One live worker, as it registered itself in the broker (``offload workers``, dashboard)."""

    id: str  # unique per worker process start: "{host}:{pid}:{random}"
    host: str
    pid: int
    queues: tuple[str, ...]  # empty: every queue
    pool: str  # "threads" | "processes" | "asyncio"
    concurrency: int
    started: float  # epoch seconds
    last_seen: float  # epoch seconds of the last heartbeat
    running: tuple[str, ...]  # ids of the jobs it holds now


@runtime_checkable
class WorkerListing(Protocol):
    """Capability of an inspector: the workers alive now (heartbeat not lapsed)."""

    def workers(self) -> list[WorkerInfo]:
        """Live workers, oldest first; a worker whose heartbeat lapsed is not listed."""
        ...


@runtime_checkable
class ProgressStore(Protocol):
    """Capability of an inspector: keep what running tasks report of their progress.

    A worker writes (throttled: a few times a second per job at most); any
    process reads. The record goes with its job when the job is deleted.
    """

    def record_progress(self, delivery: Delivery, progress: Progress) -> bool:
        """Store ``progress`` for the delivery's job; ``False`` if its lease was lost."""
        ...

    def progress(self, job_id: str) -> Progress | None:
        """What the job last reported; ``None`` if nothing (or no such job)."""
        ...


class Fired(NamedTuple):
    """The last tick a schedule enqueued: its fire time and the job that runs it."""

    fire: float  # epoch seconds of the tick (not of the enqueue)
    job_id: str


@runtime_checkable
class ScheduleStore(Protocol):
    """Where periodic schedules keep their last fire time: in the broker, shared.

    Every scheduler of every worker reads and advances the same record, so
    the record survives any scheduler and never depends on a local file.
    """

    def last_fired(self, schedule: str) -> Fired | None:
        """The last tick recorded for ``schedule``; None if it never fired."""
        ...

    def record_fired(self, schedule: str, previous: float | None, fired: Fired) -> bool:
        """Compare-and-set: record ``fired`` only if the stored fire time is ``previous``.

        ``previous=None`` means "no record yet". Returns ``False``, changing
        nothing, when another scheduler advanced the record first: two
        schedulers can never both advance it from the same value.
        """
        ...


@runtime_checkable
class StepStore(Protocol):
    """Capability of an inspector: keep the results of a job's durable steps (``offload.step``).

    A step's result is written only while the attempt holds its lease, and
    goes with its job when the job is deleted; a later run of the job (a
    retry, a redelivery after a crash, ``offload retry``) reads it back.
    """

    def record_step(self, delivery: Delivery, name: str, result: bytes) -> bool:
        """Keep step ``name``'s encoded result; ``False`` if the lease was lost."""
        ...

    def step_result(self, job_id: str, name: str) -> bytes | None:
        """The encoded result of step ``name`` of the job; ``None`` if it never finished."""
        ...


@runtime_checkable
class WorkerRegistry(Protocol):
    """Live workers register, heartbeat, and leave (a broker's ``registry``).

    One heartbeat per worker and interval, never one per job: a claim made
    through a registered broker object marks its jobs as held by that
    worker (in the claim's own write), and when the worker's heartbeat
    lapses its running jobs become claimable at once, without waiting for
    their leases. Fencing tokens still refuse a late ack from it. The
    listing is the inspector's ``WorkerListing``.
    """

    holder: str | None
    """The registered worker whose claims go through this broker object (None: none)."""

    def register(self, info: WorkerInfo, lapse: float) -> None:
        """List ``info`` until ``lapse`` seconds pass without a heartbeat.

        From now on, claims through this broker object are held by
        ``info.id`` (one registered worker per broker object: a second
        registration keeps the first holder).
        """
        ...

    def heartbeat(self, info: WorkerInfo, lapse: float) -> float | None:
        """Refresh ``info`` (its ``last_seen`` and ``running``) for ``lapse`` more seconds.

        Also releases the running jobs of every worker whose heartbeat has
        lapsed (claimable now) and forgets those workers. Returns when the
        next other worker would lapse (epoch s), or None if none is listed:
        the caller may beat then to release its jobs without delay.
        """
        ...

    def unregister(self, worker_id: str) -> None:
        """Remove the worker at once (a clean exit); claims are no longer marked as held."""
        ...


@runtime_checkable
class Scheduling(Protocol):
    """Capability: the broker stores schedules' fire times (``ScheduleStore``)."""

    @property
    def schedules(self) -> ScheduleStore:
        """The broker's schedule records, sharing its connection."""
        ...


def keep_for_horizon(messages: Sequence[Message], default_ttl: float) -> None:
    """Raise the ``result_ttl`` of messages with a ``key_horizon`` to at least that horizon.

    Every broker calls it at enqueue, before storing: a finished job must
    outlive its key's horizon for the key to find it.
    """
    for message in messages:
        horizon = message.key_horizon
        if horizon is not None:
            ttl = default_ttl if message.result_ttl is None else message.result_ttl
            if ttl < horizon:
                message.result_ttl = horizon


@runtime_checkable
class Registering(Protocol):
    """Capability of a broker: it keeps a worker registry (every broker offload ships does)."""

    @property
    def registry(self) -> WorkerRegistry:
        """The registry: an object of its own, sharing the broker's connection."""
        ...


def lapsed_error(deliveries: int) -> ErrorInfo:
    """Why a job whose lease lapsed once too often went to the dead-letter set."""
    kind = f"{WorkerLost.__module__}.{WorkerLost.__qualname__}"
    return ErrorInfo(
        kind,
        f"delivered {deliveries} times (max_deliveries) without an outcome: the worker "
        "running it most likely crashed or was killed, or the task outran its lease "
        "without the heartbeat renewing it. Retry it once the cause is fixed.",
        "",
    )


def stored_error(outcome: Outcome) -> ErrorInfo | None:
    """The error a broker keeps for an outcome: its text, or made from the live exception."""
    if outcome.error_info is None and outcome.error is not None:
        return ErrorInfo.of(outcome.error)
    return outcome.error_info
