"""Rate and concurrency limits: declared on a task, kept in the broker, applied as middleware.

``@app.task(rate_limit="100/m", concurrency=2, limit_key="customer_id")``:

- the limits hold across every worker process and host, because they live
  in the broker (``LimitStore``: a Lua script on Redis, rows on SQLite and
  PostgreSQL, the memory broker's lock in-process);
- ``limit_key`` is evaluated when the call is enqueued and travels in the
  message's ``meta``, so each key (customer, API host, tenant) has limits of
  its own;
- a call over a limit is not run: ``Limiter`` raises ``offload.Delay`` until
  the moment its token or slot is expected, and the message waits in the
  broker (no attempt spent, not in a worker's memory); the worker claims
  other messages meanwhile.

The runner installs ``Limiter`` itself the first time a task with limits
runs (``Runner.begin``): tasks without limits never meet it.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._brokers._base import LimitStore
from ._context import JobContext
from ._errors import ConfigurationError
from ._message import MAX_COUNT
from ._middleware import Delay, Middleware

KEY_META = "offload.limit_key"
"""The ``meta`` entry that carries a call's limit key from the producer to the worker."""

MAX_KEY_LENGTH = 200

LimitKey = str | Callable[..., Any]
"""The name of an argument, or a function of the call's arguments."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*\Z")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``n`` calls per ``per`` seconds, across every worker; ``burst`` more at once.

    ``RateLimit(100, per=60)`` is ``rate_limit="100/m"``. Calls are spaced
    evenly, one every ``per / n`` seconds; ``burst`` more may go at once
    after a quiet spell. In any window of ``per`` seconds at most
    ``n + burst`` calls start, and over a longer busy time they average
    ``n`` per ``per``.

    ``burst=1`` (the default) lets one call come early to make up for a
    late one, which workers' timing needs for the rate to be reached on
    average. ``burst=0`` is strict (at most ``n`` in any window) but every
    call a worker starts late loses its token: with 4 workers on SQLite,
    ``20/s`` ran 63 calls in 5 s instead of 100.
    """

    n: int
    per: float = 1.0
    burst: int = 1

    def __post_init__(self) -> None:
        _whole("n", self.n, 1)
        per = self.per
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not 0 < per <= 86400 * 366:
            raise ConfigurationError(
                f"RateLimit(per={per!r}): per is seconds, more than 0 and at most a year"
            )
        _whole("burst", self.burst, 0)

    @property
    def interval(self) -> float:
        """Seconds between calls at the steady rate."""
        return self.per / self.n

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"100/m"``, ``"20/s"``, ``"5/h"``, ``"1000/d"``, ``"10/30s"``."""
        match = _RATE.match(text)
        if match is None:
            raise ConfigurationError(
                f"rate_limit={text!r}: write calls per unit, like '20/s', '100/m', '5/h' or "
                "'10/30s', or pass offload.RateLimit(n, per=seconds, burst=...)"
            )
        count, amount, unit = match.groups()
        return cls(int(count), float(amount or 1) * _UNITS[unit[0]])


def _whole(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        raise ConfigurationError(
            f"RateLimit({name}={value!r}): {name} is a whole number, {low} or more"
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """A task's limits, checked when it is declared."""

    task: str
    rate: RateLimit | None = None
    concurrency: int | None = None
    key: LimitKey | None = None
    _signature: inspect.Signature | None = field(default=None, compare=False, repr=False)

    def key_for(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
        """The limit key of one call (at enqueue); None for a limit shared by every call."""
        key = self.key
        if key is None:
            return None
        if callable(key):
            value = key(*args, **kwargs)
            where = f"limit_key={getattr(key, '__name__', key)!r} returned"
        else:
            assert self._signature is not None  # checked when declared
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as error:
                raise ConfigurationError(f"{self.task}: {error}") from None
            bound.apply_defaults()
            value = bound.arguments[key]
            where = f"the argument {key!r} (limit_key) is"
        return _key_text(self.task, value, where)

    def rate_name(self, key: str | None) -> str:
        return f"rate:{self.task}" if key is None else f"rate:{self.task}[{key}]"

    def slot_name(self, key: str | None) -> str:
        return f"slots:{self.task}" if key is None else f"slots:{self.task}[{key}]"


def declare_limits(
    fn: Callable[..., Any],
    task: str,
    rate_limit: str | RateLimit | None,
    concurrency: int | None,
    limit_key: LimitKey | None,
) -> Limits | None:
    """A task's ``Limits`` from its options; None when it has none. Refuses what is wrong."""
    if rate_limit is None and concurrency is None:
        if limit_key is not None:
            raise ConfigurationError(
                f"{task}: limit_key= chooses whose limit a call counts against; give the task "
                "a rate_limit= or a concurrency= too"
            )
        return None
    rate = RateLimit.parse(rate_limit) if isinstance(rate_limit, str) else rate_limit
    if rate is not None and not isinstance(rate, RateLimit):
        raise ConfigurationError(
            f"rate_limit= takes '20/s', '100/m', '5/h' or an offload.RateLimit, not {rate!r}"
        )
    if concurrency is not None and (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= MAX_COUNT
    ):
        raise ConfigurationError(
            f"concurrency={concurrency!r}: the most calls of {task} running at once, 1 or more"
        )
    signature = None
    if isinstance(limit_key, str):
        signature = inspect.signature(fn)
        if limit_key not in signature.parameters:
            raise ConfigurationError(
                f"limit_key={limit_key!r} names no parameter of {task} (its parameters: "
                f"{', '.join(signature.parameters) or 'none'}); name one, or pass a function "
                "of the call's arguments"
            )
    elif limit_key is not None and not callable(limit_key):
        raise ConfigurationError(
            f"limit_key= takes the name of an argument or a function of the arguments, "
            f"not {limit_key!r}"
        )
    return Limits(task, rate, concurrency, limit_key, signature)


def _key_text(task: str, value: Any, where: str) -> str:
    if isinstance(value, (str, int, uuid.UUID)) and not isinstance(value, bool):
        text = str(value)
        if len(text) <= MAX_KEY_LENGTH:
            return text
        problem = f"{len(text)} characters long (at most {MAX_KEY_LENGTH})"
    else:
        problem = f"{value!r} of type {type(value).__name__}"
    raise ConfigurationError(
        f"{task}: {where} {problem}; a limit key is a short str or int (a customer id, a "
        "host name). Pass limit_key=<function> returning one"
    )


class Limiter(Middleware):
    """Applies each task's limits around its attempts; installed by the runner.

    ``limits_of(task name)`` gives the task's ``Limits`` (None: no limits).
    Order: the concurrency slot first, then the rate token (a refused slot
    wastes no token); the slot is released when the attempt ends, however it
    ends. A refusal raises ``offload.Delay`` for the wait the broker answered.
    """

    def __init__(self, store: LimitStore | None, limits_of: Callable[[str], Limits | None]) -> None:
        self._given = store  # None: the broker keeps no limits (refused at the first limit)
        self._limits_of = limits_of

    @property
    def _store(self) -> LimitStore:
        if self._given is None:
            raise ConfigurationError(
                "this app's broker keeps no rate or concurrency limits; use one of offload's "
                "brokers, or declare the task without rate_limit= and concurrency="
            )
        return self._given

    def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
        limits = self._limits_of(job.task)
        if limits is None:
            return call_next()
        slot = self._enter(job, limits)
        try:
            return call_next()
        finally:
            if slot is not None:
                self._store.release_slot(slot, job.id)

    async def aexecute(self, job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        limits = self._limits_of(job.task)
        if limits is None:
            return await call_next()
        slot = await asyncio.to_thread(self._enter, job, limits)
        try:
            return await call_next()
        finally:
            if slot is not None:
                await asyncio.to_thread(self._store.release_slot, slot, job.id)

    def _enter(self, job: JobContext, limits: Limits) -> str | None:
        """Take what the limits need, or raise ``Delay``; the slot's name, if one was taken."""
        key = job.meta.get(KEY_META) if limits.key is not None else None
        store = self._store
        slot = None
        if limits.concurrency is not None:
            slot = limits.slot_name(key)
            wait = store.take_slot(slot, job.id, limits.concurrency)
            if wait > 0:
                raise Delay(wait)
        if limits.rate is not None:
            rate = limits.rate
            try:
                wait = store.take_token(limits.rate_name(key), rate.interval, rate.burst)
                if wait > 0:
                    raise Delay(wait)
            except BaseException:
                if slot is not None:  # unused: its hold must not count in the average
                    store.release_slot(slot, job.id, ran=False)
                raise
        return slot
