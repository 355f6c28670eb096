"""The data that moves between a caller, a broker and a worker."""

from __future__ import annotations

import enum
import itertools
import os
import time
from dataclasses import dataclass, field
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

    ``args`` and ``kwargs`` are Python objects here; a durable app encodes
    them before they reach its broker. Per-call options are typed fields,
    never mixed into the user's kwargs.
    """

    id: str
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str = "default"
    priority: int = 0
    eta: float | None = None
    attempt: int = 0
    """Deliveries so far: 0 until a worker claims it, then 1, 2, ..."""
    max_deliveries: int | None = None
    key: str | None = None
    timeout: float | None = None
    retries: int | None = None
    created: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)


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
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class Outcome:
    """How one delivery ended: what the broker records on ``ack``."""

    state: State
    result: Any = None
    error: BaseException | None = None

    @classmethod
    def success(cls, result: Any) -> Outcome:
        return cls(State.SUCCEEDED, result)

    @classmethod
    def failure(cls, error: BaseException) -> Outcome:
        return cls(State.FAILED, None, error)

    @classmethod
    def cancelled(cls) -> Outcome:
        return cls(State.CANCELLED)
