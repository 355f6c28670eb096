"""The data that moves between a caller, a broker and a worker."""

from __future__ import annotations

import enum
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

_counter = itertools.count()
_PROCESS_TAG = os.urandom(3).hex()


def new_id() -> str:
    """A job id: sortable by creation time (milliseconds), unique across processes.

    24 hex characters: 12 of time, 6 of a per-process counter, 6 random per
    process. Cheap enough to mint on every call (no uuid4, no syscalls).
    """
    return f"{time.time_ns() // 1_000_000:012x}{next(_counter) & 0xFFFFFF:06x}{_PROCESS_TAG}"


@dataclass(slots=True)
class Message:
    """One call of a task, as stored by a broker.

    In-process, ``args`` and ``kwargs`` are the caller's objects. A durable
    app encodes them into ``payload`` (bytes) before the message reaches its
    broker, and ``args``/``kwargs`` are then empty; the runner decodes them
    on the worker. Per-call options are typed fields, never mixed into the
    user's kwargs.
    """

    id: str
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str = "default"
    priority: int = 0
    """Higher runs first."""
    eta: float | None = None
    """Epoch seconds before which the message is not claimable."""
    attempt: int = 0
    """Deliveries so far: 0 until a worker claims it, then 1, 2, ..."""
    max_deliveries: int | None = None
    key: str | None = None
    """Idempotency key: one live job per key (see ``Broker.enqueue``)."""
    timeout: float | None = None
    retries: int | None = None
    created: float = 0.0
    payload: bytes | None = None
    result_ttl: float | None = None
    """Seconds to keep the result after the job finishes (broker default if None)."""
    meta: dict[str, str] | None = None
    """A small map for cross-cutting data (trace context); None when empty."""


@dataclass(slots=True)
class Delivery:
    """A message claimed by a worker, under a lease.

    ``token`` fences the claim: a broker refuses an ack or nack whose token
    is not the message's current one (its lease lapsed and another worker
    claimed it since).
    """

    message: Message
    token: int
    lease_until: float

    @property
    def attempt(self) -> int:
        return self.message.attempt


class State(str, enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    """Waiting to be claimed (including a delay or ETA not reached yet)."""
    RUNNING = "running"
    RETRYING = "retrying"
    """Failed an attempt; the next one waits in the broker."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """No attempts left: the job is in the dead-letter set until purged."""
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})


@dataclass(slots=True)
class ErrorInfo:
    """A task's exception in a form any process can read."""

    type: str
    """``module.QualName`` of the exception class."""
    message: str
    traceback: str

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        import traceback  # only on the failure path

        kind = type(error)
        text = "".join(traceback.format_exception(kind, error, error.__traceback__))
        return cls(f"{kind.__module__}.{kind.__qualname__}", str(error), text)


@dataclass(slots=True)
class Outcome:
    """How one delivery ended: what the broker records on ``ack``.

    ``result`` and ``error`` are the live objects (the in-process mode hands
    them to the caller's handle). A durable app also fills ``payload`` (the
    encoded result) and ``error_info`` (the exception as text) for storage.
    """

    state: State
    result: Any = None
    error: BaseException | None = None
    payload: bytes | None = None
    error_info: ErrorInfo | None = None

    @classmethod
    def success(cls, result: Any) -> Outcome:
        return cls(State.SUCCEEDED, result)

    @classmethod
    def failure(cls, error: BaseException) -> Outcome:
        return cls(State.FAILED, None, error)

    @classmethod
    def cancelled(cls) -> Outcome:
        return cls(State.CANCELLED)


@dataclass(slots=True)
class JobInfo:
    """One job as a broker's inspection sees it (CLI, dashboard, ``app.handle``)."""

    id: str
    task: str
    queue: str
    state: State
    attempt: int
    priority: int = 0
    eta: float | None = None
    created: float = 0.0
    finished: float | None = None
    key: str | None = None
    max_deliveries: int | None = None
    payload: bytes | None = None
    """The encoded arguments."""
    result: bytes | None = None
    """The encoded result, once succeeded."""
    error: ErrorInfo | None = None
    """The last attempt's error (also while retrying)."""
