"""Rows of the SQL brokers: a message as columns and back, a job's row as inspection shows it.

The SQLite and PostgreSQL brokers store a job in the same columns, and read
it back through the same functions here. Reading never raises: a row may
have been written or changed by anyone who reaches the database (SQLite
keeps a value of any type in any column; PostgreSQL types its columns, but
a state outside offload's is still possible once a constraint is dropped).
A claimed row that cannot be read whole is a defect delivery, dead-lettered
alone by the runner (``claimed_delivery``); a row that inspection cannot
read shows as a failed job whose error says why (``row_info``).

Each schema module keeps what is its own: its SQL, where its claim puts
the message columns, and what its driver needs (SQLite reads text that is
not UTF-8 again with the bad bytes escaped; PostgreSQL refuses NUL).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from .._errors import MessageRejected
from .._message import Delivery, ErrorInfo, JobInfo, Message, State, read_delivery, storable

MESSAGE_COLUMNS = (
    "id, task, queue, priority, eta, attempt, max_deliveries, key, timeout, retries, "
    "created, payload, result_ttl, meta"
)
"""A message's columns, as a claim returns them (``row_message`` reads them)."""
INFO_COLUMNS = (
    "id, task, queue, state, attempt, priority, eta, created, finished, key, "
    "max_deliveries, payload, result, error_type, error_message, error_traceback, error_args"
)
"""A job's columns, as inspection selects them (``row_info`` reads them)."""
_INFO_WIDTH = len(INFO_COLUMNS.split(", "))

REJECTED = f"{MessageRejected.__module__}.{MessageRejected.__qualname__}"
"""The error type recorded for a job offload cannot read or store."""

_STATES = {state.value: state for state in State}

# -- a message as columns and back ---------------------------------------------------


def message_row(message: Message, now: float) -> tuple[Any, ...]:
    """The inserted columns of ``message``: ``MESSAGE_COLUMNS``, with ``due`` after priority."""
    if message.args or message.kwargs:
        raise ValueError(
            f"message {message.id} carries Python arguments: a durable broker stores only "
            "encoded ones (message.payload). Send it through a durable App, which encodes "
            "its arguments."
        )
    return (
        message.id,
        message.task,
        message.queue,
        message.priority,
        now if message.eta is None else message.eta,
        message.eta,
        message.attempt,
        message.max_deliveries,
        message.key,
        message.timeout,
        message.retries,
        message.created or now,
        message.payload,
        message.result_ttl,
        None if not message.meta else json.dumps(message.meta),
    )


def claimed_delivery(token: int, columns: Sequence[Any], until: float) -> Delivery:
    """A claimed job's ``MESSAGE_COLUMNS`` as a delivery: whole, or a defect saying why."""
    job_id = columns[0]
    if type(job_id) is not str or not is_text(job_id):
        # Only on SQLite (PostgreSQL's ids are always text): a name for the
        # defect, whose ack finds the row by its token.
        job_id = shown(job_id)
    return read_delivery(job_id, token, until, functools.partial(row_message, columns))


def row_message(columns: Sequence[Any]) -> Message:
    """The message of a row's ``MESSAGE_COLUMNS``; raises if a field cannot be decoded.

    Only decoding happens here: ``read_delivery`` checks every field.
    """
    (id_, task, queue, priority, eta, attempt, max_deliveries, key, timeout, retries) = columns[:10]
    created, payload, result_ttl, meta = columns[10:]
    if type(id_) is not str or not is_text(id_):
        raise ValueError(f"the job id {id_!r:.60} is not text")
    return Message(
        id_,
        task,
        (),
        {},
        queue=queue,
        priority=priority,
        eta=eta,
        attempt=attempt,
        max_deliveries=max_deliveries,
        key=key,
        timeout=timeout,
        retries=retries,
        created=created,
        payload=payload,
        result_ttl=result_ttl,
        meta=None if meta is None else _meta(meta),
    )


def _meta(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as error:
        # The stored text and the decoder's own error type (JSONDecodeError):
        # the defect says both what is there and what is wrong with it.
        raise ValueError(
            f"meta {text!r:.60} is not JSON ({type(error).__name__}: {error})"
        ) from None


def error_row(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None, str | None]:
    """The four error columns: type, message, traceback, args (as ``ErrorInfo`` holds them)."""
    if error is None:
        return None, None, None, None
    return error.type, error.message, error.traceback, error.args


# -- a job's row as inspection shows it ------------------------------------------------

_NONE = type(None)
# The types each column of INFO_COLUMNS may hold, by position. Message fields
# (a claim dead-letters a job with a bad one) and outcome fields (an ack or a
# nack writes them anew, so they only count once the job has finished).
_Fields = tuple[tuple[int, str, tuple[type, ...]], ...]
_MESSAGE_FIELDS: _Fields = (
    (0, "id", (str,)),
    (1, "task", (str,)),
    (2, "queue", (str,)),
    (4, "attempt", (int,)),
    (5, "priority", (int,)),
    (6, "eta", (int, float, _NONE)),
    (7, "created", (int, float)),
    (9, "key", (str, _NONE)),
    (10, "max_deliveries", (int, _NONE)),
    (11, "payload", (bytes, _NONE)),
)
_OUTCOME_FIELDS: _Fields = (
    (8, "finished", (int, float, _NONE)),
    (12, "result", (bytes, _NONE)),
    (13, "error_type", (str, _NONE)),
    (14, "error_message", (str, _NONE)),
    (15, "error_traceback", (str, _NONE)),
    (16, "error_args", (str, _NONE)),
)


def row_info(row: Sequence[Any]) -> JobInfo:
    """A row of ``INFO_COLUMNS`` as inspection shows it; never raises.

    A producer polling many jobs must keep settling the others: a job with
    a field offload would not have written (the database was damaged, or
    written by something else) shows as failed, with an error that names
    the field (or the error it failed with, if it has one). A live job whose
    outcome fields are bad shows as it is: its next ack or nack writes them
    again. A failed job always says why. A row without ``error_args`` (the
    columns before it was added) reads as one with none.
    """
    values = (*row, None) if len(row) == _INFO_WIDTH - 1 else tuple(row)
    if len(values) != _INFO_WIDTH:
        return _corrupt_info(values, f"it has {len(row)} columns, not {_INFO_WIDTH}")
    state = _STATES.get(values[3]) if type(values[3]) is str else None
    problem = _problem(values, _MESSAGE_FIELDS)
    if state is None:
        problem = problem or f"its state {shown(values[3])} is not one offload knows"
    elif _problem(values, _OUTCOME_FIELDS) is not None:
        if not state.finished:  # the next ack or nack writes them again
            values = values[:8] + (None,) + values[9:12] + (None,) * 5
        else:
            problem = problem or _problem(values, _OUTCOME_FIELDS)
    if problem is not None:
        return _corrupt_info(values, problem)
    assert state is not None
    error_type, error_message, error_traceback, error_args = values[13:17]
    return JobInfo(
        id=values[0],
        task=values[1],
        queue=values[2],
        state=state,
        attempt=values[4],
        priority=values[5],
        eta=values[6],
        created=values[7],
        finished=values[8],
        key=values[9],
        max_deliveries=values[10],
        payload=values[11],
        result=values[12],
        error=_error(state, error_type, error_message, error_traceback, error_args),
    )


def _error(state: State, kind: Any, message: Any, traceback: Any, args: Any) -> ErrorInfo | None:
    if kind is not None:
        return ErrorInfo(kind, message or "", traceback or "", args)
    if state is State.FAILED:  # dead-lettered, yet its record keeps no reason
        return ErrorInfo(REJECTED, "the job failed and its record holds no error", "")
    return None


def state_of(value: object) -> State:
    """A stored state; one offload does not know (a CHECK constraint bypassed) reads as failed."""
    return _STATES.get(value, State.FAILED) if type(value) is str else State.FAILED


def is_text(value: str) -> bool:
    """Whether ``value`` is storable UTF-8: no lone surrogate (SQLite's ``fetch`` reads bad
    bytes as those; PostgreSQL's text never holds one)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value: Any) -> str:
    """``value`` as text to show in an error: short, and storable anywhere."""
    return storable(f"{type(value).__name__} {value!r:.60}")


def _problem(values: Sequence[Any], fields: _Fields) -> str | None:
    for index, name, kinds in fields:
        value = values[index]
        if type(value) not in kinds:
            return f"its {name} is {shown(value)}"
        if type(value) is str and not is_text(value):
            return f"its {name} {shown(value)} is not UTF-8 text"
    return None


def _corrupt_info(values: Sequence[Any], problem: str) -> JobInfo:
    """A job whose stored record offload cannot read whole: failed, saying why.

    Of the two versions this keeps the one that shows what is readable (the
    attempt, the times, the payload), not only the id, task and queue; a
    row of the wrong width has its missing columns read as NULL.
    """

    values = (*values, *(None,) * (_INFO_WIDTH - len(values)))

    def typed(index: int, kinds: tuple[type, ...], default: Any = None) -> Any:
        value = values[index]
        if type(value) is str:
            return storable(value) if str in kinds else default
        return value if type(value) in kinds else default

    job_id = typed(0, (str,)) or shown(values[0])
    failed_with = [typed(index, (str,)) for index in (13, 14, 15, 16)]
    if values[3] == State.FAILED.value and None not in failed_with[:2]:
        error = ErrorInfo(failed_with[0], failed_with[1], failed_with[2] or "", failed_with[3])
    else:
        error = ErrorInfo(
            REJECTED,
            f"the stored record of job {job_id} is corrupt: {problem}. Something other than "
            "this offload version wrote or changed it, or the database was damaged; enqueue "
            "the call again (or repair the row and retry the job), and check who else writes "
            "to the database",
            "",
        )
    return JobInfo(
        id=job_id,
        task=typed(1, (str,), "?"),
        queue=typed(2, (str,), "?"),
        state=State.FAILED,
        attempt=typed(4, (int,), 0),
        priority=typed(5, (int,), 0),
        eta=typed(6, (int, float)),
        created=typed(7, (int, float), 0.0),
        finished=typed(8, (int, float)),
        key=typed(9, (str,)),
        max_deliveries=typed(10, (int,)),
        payload=typed(11, (bytes,)),
        error=error,
    )


def seq_cursor(cursor: str) -> int:
    """The ``seq`` a SQL inspector's page cursor holds; ``ValueError`` for anything else."""
    if not cursor.isdigit() or len(cursor) > 19:
        raise ValueError(f"{cursor!r} is not a page cursor of this broker: start from page one")
    return int(cursor)
