"""The data that moves between a caller, a broker and a worker."""

from __future__ import annotations

import enum
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

_counter = itertools.count()
_PROCESS_TAG = os.urandom(3).hex()


def new_id() -> str:
    """A job id: sortable by creation time (milliseconds), unique across processes.

    24 hex characters: 12 of time, 6 of a per-process counter, 6 random per
    process. Cheap enough to mint on every call (no uuid4, no syscalls).
    """
    # One integer made into 9 bytes, then hex: half the cost of formatting two fields.
    stamp = (time.time_ns() // 1_000_000) << 24 | (next(_counter) & 0xFFFFFF)
    return stamp.to_bytes(9, "big").hex() + _PROCESS_TAG


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
    key_horizon: float | None = None
    """With a ``key``: seconds after its job finished (in any state: succeeded,
    failed or cancelled) during which the key still returns that job, and the
    broker keeps the job at least that long. What makes a periodic tick run
    once: a late scheduler's enqueue of a tick that already ran finds it.
    Read at enqueue only (a claimed message comes back without it)."""


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
    defect: str | None = None
    """Why the broker could not read this message whole (a corrupt field, a
    missing record): the runner dead-letters it with this reason, alone,
    without running anything. ``message`` then holds what could be read."""

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
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
"""The states a job ends in (``State.finished``)."""


class Progress(NamedTuple):
    """What a running task last said of its progress (``offload.current().progress``)."""

    done: float
    total: float | None = None
    """``None``: the task does not know how much there is."""
    note: str | None = None
    at: float = 0.0
    """When it was reported (the worker's clock, epoch seconds)."""

    @classmethod
    def stored(cls, done: Any, total: Any, note: Any, at: Any) -> Progress | None:
        """A progress as a broker stored it; ``None`` if a field is not what offload writes
        (a broker's contents are data: a damaged record is no record, never an error)."""
        numbers = (int, float)
        if type(done) not in numbers or type(at) not in numbers:
            return None
        if total is not None and type(total) not in numbers:
            return None
        if note is not None and type(note) is not str:
            return None
        return cls(float(done), None if total is None else float(total), note, float(at))

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1]; ``None`` without a (positive) total."""
        if not self.total or self.total <= 0:
            return None
        return max(0.0, min(1.0, self.done / self.total))


@dataclass(slots=True)
class ErrorInfo:
    """A task's exception in a form any process can read."""

    type: str
    """``module.QualName`` of the exception class."""
    message: str
    traceback: str
    args: str | None = None
    """The exception's ``args`` as offload JSON, when they encode: the producer
    rebuilds the exception with them (``KeyError('missing')`` comes back as
    itself). ``None``: only the message text travels."""

    @classmethod
    def of(cls, error: BaseException, args: str | None = None) -> ErrorInfo:
        """The record of ``error``; its texts made storable anywhere (see ``storable``)."""
        import traceback  # only on the failure path

        kind = type(error)
        text = "".join(traceback.format_exception(kind, error, error.__traceback__))
        return cls(
            storable(f"{kind.__module__}.{kind.__qualname__}"),
            storable(_message_of(error)),
            storable(text),
            args,
        )


def _message_of(error: BaseException) -> str:
    try:
        return str(error)
    except Exception as failure:  # noqa: BLE001 - a user's __str__ may raise anything
        return f"<str() of the exception failed: {type(failure).__name__}>"


def storable(text: str) -> str:
    """``text`` with what some store refuses escaped: NUL (PostgreSQL) and lone
    surrogates (not UTF-8, refused by every driver) become ``\\x00``, ``\\udcff``.

    >>> storable("bad\\x00byte \\udcff")
    'bad\\\\x00byte \\\\udcff'
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


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
    progress: Progress | None = None
    """What the task last reported (``app.job(id)``; inspector listings leave it out)."""


# --- validation ---------------------------------------------------------------
#
# One set of rules for a message, applied twice: at the call (a bad option is
# refused with a clear error, before anything is stored) and when a broker
# reads a message back (what it stored may have been written or damaged by
# anyone who can reach the broker: a bad field makes that one message a
# defect, dead-lettered alone, never an exception in the claim loop).

DEFAULT_MAX_DELIVERIES = 10
"""Deliveries without an outcome (crashed or killed workers) before a job whose
``max_deliveries`` is unset goes to the dead-letter set: a message that kills
every worker that runs it ends there, not in an endless loop."""

MAX_NAME = 200
"""Bytes (UTF-8) in a task or queue name."""
MAX_KEY = 1000
"""Bytes (UTF-8) in an idempotency key (PostgreSQL indexes it: its limit is ~2,700)."""
MAX_COUNT = 1_000_000
"""Attempts, retries and max_deliveries stay below this (an int32 column has room)."""
MAX_PRIORITY = 1_000_000
MAX_SECONDS = 100 * 365 * 86400.0
"""A century: longer delays, timeouts and TTLs are typing mistakes."""
MAX_EPOCH = 32503680000.0
"""Epoch seconds of the year 3000: later ETAs are mistakes."""


def _text_problem(value: object, what: str, limit: int, *, empty: bool = False) -> str | None:
    if type(value) is not str:
        return f"{what} must be a str, not {type(value).__name__}"
    if not value and not empty:
        return f"{what} must not be empty"
    if "\x00" in value:
        return f"{what} {value[:60]!r} contains a NUL character"
    if value.isascii():  # as many UTF-8 bytes as characters: no copy to count them
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))  # the stores' limits are in bytes
        except UnicodeEncodeError:
            return f"{what} {value[:60]!r} is not valid Unicode text (a lone surrogate)"
    if size > limit:
        return f"{what} is {size} bytes long (UTF-8), over the limit of {limit}"
    return None


def _int_problem(value: object, what: str, low: int, high: int) -> str | None:
    if type(value) is not int:
        return f"{what} must be an int, not {type(value).__name__} {value!r:.60}"
    if not low <= value <= high:
        return f"{what}={value} is out of range: it must be between {low} and {high}"
    return None


def _seconds_problem(value: object, what: str, low: float, high: float) -> str | None:
    if not isinstance(value, (int, float)) or type(value) is bool:
        return f"{what} must be a number of seconds, not {type(value).__name__} {value!r:.60}"
    if not low <= value <= high:  # false for nan as well
        return f"{what}={value!r} is out of range: it must be between {low:g} and {high:g}"
    return None


def name_problem(value: object, what: str) -> str | None:
    """Why ``value`` cannot be a task or queue name (None if it can)."""
    return _text_problem(value, what, MAX_NAME)


def key_problem(value: object) -> str | None:
    """Why ``value`` cannot be an idempotency key (None if it can)."""
    return _text_problem(value, "key", MAX_KEY, empty=True)


def option_problem(message: Message) -> str | None:
    """Why the options of ``message`` are not ones offload can store and honour."""
    problem = name_problem(message.queue, "queue") or _int_problem(
        message.priority, "priority", -MAX_PRIORITY, MAX_PRIORITY
    )
    if problem is None and message.max_deliveries is not None:  # set on every durable message
        problem = _int_problem(message.max_deliveries, "max_deliveries", 1, MAX_COUNT)
    if problem is None and _RARE_OPTIONS(message) != _NONE_SET:  # most messages set none
        problem = _rare_option_problem(message)
    return problem


_RARE_OPTIONS = attrgetter("eta", "key", "timeout", "retries", "result_ttl", "key_horizon")
_NONE_SET = (None,) * 6


def _rare_option_problem(message: Message) -> str | None:
    checks = (
        None if message.eta is None else _seconds_problem(message.eta, "eta", 0.0, MAX_EPOCH),
        None if message.key is None else key_problem(message.key),
        None
        if message.timeout is None
        else _seconds_problem(message.timeout, "timeout", 0.0, MAX_SECONDS),
        None if message.retries is None else _int_problem(message.retries, "retries", 0, MAX_COUNT),
        None
        if message.result_ttl is None
        else _seconds_problem(message.result_ttl, "result_ttl", 0.0, MAX_SECONDS),
        _horizon_problem(message),
    )
    return next((problem for problem in checks if problem is not None), None)


def _horizon_problem(message: Message) -> str | None:
    if message.key_horizon is None:
        return None
    if message.key is None:
        return "key_horizon needs a key: it says how long the key outlives its job"
    return _seconds_problem(message.key_horizon, "key_horizon", 0.0, MAX_SECONDS)


def message_problem(message: Message) -> str | None:
    """Why a message read back from a broker cannot be run as it is (None if it can).

    Every field is checked for type and range, so that nothing downstream
    (the runner, an executor, an ack) meets a value it cannot handle.
    """
    return None if _plainly_valid(message) else _rules_problem(message)


def _rules_problem(message: Message) -> str | None:
    """``message_problem`` by its rules, field by field: what says why."""
    problem = (
        name_problem(message.task, "the task name")
        or option_problem(message)
        or _int_problem(message.attempt, "attempt", 0, MAX_COUNT)
        or _seconds_problem(message.created, "created", 0.0, MAX_EPOCH)
    )
    if problem is not None:
        return problem
    if message.payload is not None and type(message.payload) is not bytes:
        return f"the payload must be bytes, not {type(message.payload).__name__}"
    meta = message.meta
    if meta is not None and not (
        type(meta) is dict and all(type(k) is str and type(v) is str for k, v in meta.items())
    ):
        return "meta must be a map of str to str"
    return None


def _plainly_valid(m: Message) -> bool:
    """A quick yes for the usual message (ASCII names, no rare option, no meta), in one
    call: the rules above cost a worker about a tenth of its Python per job.

    Never yes where ``_rules_problem`` would say no (``test_message_rules.py``
    checks it against them); a no only means they are asked, and say why.
    """
    task, queue, priority, attempt = m.task, m.queue, m.priority, m.attempt
    created, deliveries, payload = m.created, m.max_deliveries, m.payload
    return (
        type(task) is str
        and type(queue) is str
        and 0 < len(task) <= MAX_NAME
        and 0 < len(queue) <= MAX_NAME
        and task.isascii()  # then as many UTF-8 bytes as characters
        and queue.isascii()
        and "\x00" not in task
        and "\x00" not in queue
        and type(priority) is int
        and -MAX_PRIORITY <= priority <= MAX_PRIORITY
        and type(attempt) is int
        and 0 <= attempt <= MAX_COUNT
        and type(created) is float
        and 0.0 <= created <= MAX_EPOCH
        and (deliveries is None or (type(deliveries) is int and 1 <= deliveries <= MAX_COUNT))
        and _RARE_OPTIONS(m) == _NONE_SET
        and (payload is None or type(payload) is bytes)
        and m.meta is None
    )


def read_delivery(job_id: str, token: int, until: float, build: Callable[[], Message]) -> Delivery:
    """A claimed message as a broker read it back: whole, or a defect saying why not.

    ``build`` decodes the stored row or hash; whatever it raises, or a field
    ``message_problem`` refuses, makes the delivery a defect (dead-lettered
    by the runner) instead of an error that would stall the claim.
    """
    try:
        message = build()
    except Exception as error:  # noqa: BLE001 - stored data may be anything
        reason = f"its stored fields could not be decoded ({type(error).__name__}: {error})"
        return Delivery(Message(job_id, "?", (), {}), token, until, defect=reason)
    problem = message_problem(message)
    if problem is None:
        return Delivery(message, token, until)
    task = message.task if name_problem(message.task, "") is None else "?"
    return Delivery(Message(job_id, task, (), {}), token, until, defect=problem)
