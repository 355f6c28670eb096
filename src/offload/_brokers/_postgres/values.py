"""Values PostgreSQL takes and refuses, and what offload says when it refuses one.

Rows are read back through ``_sql_rows``, shared with the SQLite broker;
what is PostgreSQL's own is here: where a claim puts its columns, that a
text holds no NUL nor lone surrogate, and the errors of a refused batch or
outcome (which message, and what in it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from ..._errors import ConfigurationError
from ..._message import (
    Delivery,
    ErrorInfo,
    Message,
    name_problem,
    option_problem,
    storable,
)
from .._sql_rows import REJECTED, claimed_delivery, error_row

_KEY_BYTES = 2000
"""PostgreSQL indexes a key of up to about 2,700 bytes (a third of a page)."""


def row_delivery(row: Sequence[Any], until: float) -> Delivery:
    """A claimed row (``seq, due, token, MESSAGE_COLUMNS``): whole, or a defect saying why."""
    return claimed_delivery(row[2], row[3:], until)


def error_columns(
    error: ErrorInfo | None,
) -> tuple[str | None, str | None, str | None, str | None]:
    """``error_row``'s type, message, traceback, args: texts PostgreSQL takes (no NUL, no
    lone surrogate)."""
    etype, emsg, etb, eargs = error_row(error)
    return _storable(etype), _storable(emsg), _storable(etb), _storable(eargs)


def _storable(text: str | None) -> str | None:
    return None if text is None else storable(text)


def storable_text(value: object) -> bool:
    """Whether PostgreSQL can hold ``value`` as text (no NUL, no lone surrogate)."""
    return type(value) is str and storable(value) == value


def refused_for_values(error: BaseException) -> bool:
    """Whether ``error`` is the server or the driver refusing a statement's values.

    Those fail the same way every time (not an outage, not a race): a NUL or
    a lone surrogate in a text, an integer out of range, an index entry too
    large, a value psycopg cannot adapt.
    """
    if isinstance(error, (psycopg.DataError, psycopg.errors.ProgramLimitExceeded, UnicodeError)):
        return True
    return isinstance(error, psycopg.ProgrammingError) and error.sqlstate is None


def outcome_refused(job_id: str, error: BaseException) -> ErrorInfo:
    """The error recorded for a job whose outcome PostgreSQL refused to store."""
    return ErrorInfo(
        REJECTED,
        storable(
            f"the outcome of job {job_id} could not be stored: PostgreSQL refused it "
            f"({type(error).__name__}: {str(error)[:300]}), so the job is recorded as failed "
            "with this error instead. Make the task return a value (or raise an error) that "
            "the serializer encodes, then retry the job"
        ),
        "",
    )


def enqueue_refused(messages: Sequence[Message], error: BaseException) -> ConfigurationError:
    """offload's error for a batch PostgreSQL refused: which message, and what in it."""
    for message in messages:
        problem = (
            (None if storable_text(message.id) else "the job id has a NUL or a lone surrogate")
            or name_problem(message.task, "the task name")
            or option_problem(message)
            or _key_size_problem(message.key)
        )
        if problem is not None:
            return ConfigurationError(
                f"job {message.id!r:.60} (task {message.task!r:.80}) cannot be stored: {problem}"
            )
    return ConfigurationError(
        f"PostgreSQL refused this batch of {len(messages)} messages "
        f"({type(error).__name__}: {str(error)[:300]})"
    )


def _key_size_problem(key: str | None) -> str | None:
    size = 0 if key is None else len(key.encode("utf-8"))
    if size <= _KEY_BYTES:
        return None
    return (
        f"the key is {size:,} bytes of UTF-8, over the {_KEY_BYTES:,} that PostgreSQL "
        "indexes: use a shorter key (a hash of a long one, for example)"
    )


@contextlib.contextmanager
def refusals(messages: Sequence[Message]) -> Iterator[None]:
    """offload's error for a batch the server refused: a taken id or key, a value it cannot hold."""
    try:
        yield
    except psycopg.errors.UniqueViolation as error:
        raise _duplicate(error) from None
    except Exception as error:
        if refused_for_values(error):  # NUL, a lone surrogate, an int out of range, ...
            raise enqueue_refused(messages, error) from None
        raise


def _duplicate(error: psycopg.errors.UniqueViolation) -> ValueError:
    if error.diag.constraint_name == "jobs_live_key":
        return ValueError(
            "another transaction stored a live job with one of this batch's keys at the same "
            "time, unseen by this one's snapshot: enqueue keyed messages under READ COMMITTED "
            f"({error.diag.message_detail})"
        )
    return ValueError(f"a job id of this batch already exists ({error.diag.message_detail})")
