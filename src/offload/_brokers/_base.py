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
from .._message import Delivery, ErrorInfo, JobInfo, Message, Outcome, State


class Lease(enum.Enum):
    """What renewing a lease found (``Broker.extend``).

    Room is left for more answers riding the same heartbeat (a cancellation
    request): a worker treats any answer but ``HELD`` as news about the job.
    """

    HELD = "held"
    LOST = "lost"


class Broker(Protocol):
    """Storage and claiming of messages."""

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        """Store ``messages`` in one transaction (all or none); their job ids, in order.

        A message with a ``key`` for which a job is queued, running or
        retrying is not stored: its id in the answer is that job's. Within
        the broker's ``reuse_window`` (seconds, 0 by default) the same holds
        for a job that succeeded with that key (result reuse).
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


@runtime_checkable
class Waker(Protocol):
    """Capability: block until something may be claimable, without polling."""

    def wait_for_messages(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a message of ``queues`` (any for None) may be claimable,
        ``interrupt()`` is called, or ``timeout`` seconds pass."""
        ...

    def interrupt(self) -> None:
        """Wake every ``wait_for_messages`` caller now (used to stop)."""
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
        """Cancel a queued or retrying job; ``False`` if it is running or finished."""
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
