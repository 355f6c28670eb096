"""The checks of task and call option values: each a clear error at the call, before
anything is stored (``@app.task(...)``, ``task.options(...)``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ._errors import ConfigurationError
from ._handle import Handle
from ._message import MAX_COUNT, MAX_EPOCH, MAX_PRIORITY, MAX_SECONDS, key_problem, name_problem

Seconds = float | timedelta


def _exception_types(
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
) -> tuple[type[BaseException], ...]:
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigurationError(
                f"retry_on= takes exception classes, like (ConnectionError, TimeoutError); "
                f"got {kind!r}"
            )
    return types


def _seconds(option: str, value: Seconds | None, positive: bool = False) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigurationError(
            f"{option}= takes seconds (a number or a timedelta), not {value!r}"
        )
    if not 0 <= seconds <= MAX_SECONDS or (positive and seconds == 0):  # nan fails too
        bound = "greater than 0" if positive else "0 or more"
        raise ConfigurationError(
            f"{option}={value!r}: must be {bound} seconds, and at most {MAX_SECONDS:.0f} "
            "(a century)"
        )
    return float(seconds)


def _count(option: str, value: int | None, positive: bool = False) -> int | None:
    if value is None:
        return None
    low = 1 if positive else 0
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        raise ConfigurationError(
            f"{option}= takes a whole number from {low} to {MAX_COUNT}, not {value!r}"
        )
    return value


def _dependencies(depends_on: Iterable[Handle[Any] | str] | None) -> tuple[Any, ...]:
    if depends_on is None:
        return ()
    if isinstance(depends_on, (str, Handle)):
        depends_on = [depends_on]
    found = tuple(depends_on)
    for item in found:
        if not isinstance(item, (str, Handle)) or not getattr(item, "id", item):
            raise ConfigurationError(
                f"depends_on= takes handles (or job ids) of calls made before, not {item!r}"
            )
    return found


def _eta(eta: datetime | float | None) -> float | None:
    if eta is None:
        return None
    when = eta.timestamp() if isinstance(eta, datetime) else eta
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not 0 <= when <= MAX_EPOCH:
        raise ConfigurationError(
            f"eta={eta!r}: pass a datetime (aware, or local time) or epoch seconds between "
            "now and the year 3000"
        )
    return float(when)


def _name(value: str, what: str) -> str:
    problem = name_problem(value, what)
    if problem is not None:
        raise ConfigurationError(problem)
    return value


def _key(value: str) -> str:
    problem = key_problem(value)
    if problem is not None:
        raise ConfigurationError(f"key=: {problem}")
    return value


def _integer(option: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{option}= takes a whole number, not {value!r}")
    if abs(value) > MAX_PRIORITY:
        raise ConfigurationError(
            f"{option}={value}: must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
        )
    return value
