"""The SQLite broker's writes of the claim path: enqueue, claim, ack, dead-lettering.

Each function takes the connection (or a cursor) it writes with, inside a
transaction the caller opened: the broker's own (``Database.write``), or,
for a transactional enqueue, the caller's. Claimed rows are read back
through ``_sql_rows``, shared with the PostgreSQL broker: a claimed row
with a corrupt field makes that job alone a defect (dead-lettered by the
runner).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from ..._message import DEFAULT_MAX_DELIVERIES, Delivery, Message
from .._base import lapsed_error
from .._sql_rows import claimed_delivery, error_row, is_text, message_row
from .connection import fetch, fetch_escaped, undecodable, with_nulls
from .schema import QUERIES

Writer = sqlite3.Connection | sqlite3.Cursor
"""What a write runs on: the broker's connection, or a cursor of the caller's."""

SEQ_BITS = (1 << 40) - 1
"""A token's low 40 bits: the job's seq (``claim`` in queries.sql makes tokens so).

Tokens are then unique across jobs (a worker keys what it runs by token);
seq stays below 2**40, a trillion jobs. Above: the job's claims so far.
"""


class Ack(NamedTuple):
    token: int
    columns: tuple[Any, ...] | None  # state, finished, expires, result, error; None: delete


class Claim(NamedTuple):
    queues: tuple[str, ...] | None
    limit: int
    lease: float


class Step(NamedTuple):
    """A step of a rate or concurrency limit (``limits.py``), written with what it meets."""

    run: Callable[[sqlite3.Connection, float], float]
    """In the write transaction, given now: its answer."""
    alone: Callable[[sqlite3.Connection, float], bool] | None = None
    """Met nothing: one statement of its own instead; True if that answered (0.0)."""


class AckClaim(NamedTuple):
    """An ack, then a claim, in one transaction (``AckAndClaim``): answers (acked, claimed)."""

    ack: Ack
    claim: Claim


Write = Ack | Claim | Step | AckClaim
Answer = bool | list[Delivery] | float | tuple[bool, list[Delivery]]
"""What one write answers: an ack's bool, a claim's deliveries, a step's wait, or both."""


def fence(token: int) -> tuple[int, int]:
    """The fencing parameters of a delivery's token: its job's seq, and the token."""
    return token & SEQ_BITS, token


def row_delivery(row: Sequence[Any], until: float) -> Delivery:
    """A claimed row (seq, token, MESSAGE_COLUMNS) as a delivery: a defect if a field is corrupt."""
    return claimed_delivery(row[1], row[2:], until)


# -- enqueue --------------------------------------------------------------------------

# The common insert and ack bind no None: their NULLs are written into the
# statement (``with_nulls`` says what a bound None costs: six of them in an
# insert, four in an ack, about a tenth of an enqueue's CPU). An insert's
# optional columns, by their place in message_row's row: eta, key, timeout,
# retries, result_ttl, meta; the others are bound.
_OPTIONAL_PLACES = (5, 8, 9, 10, 13, 14)
_OPTIONAL = itemgetter(*_OPTIONAL_PLACES)
_BOUND = itemgetter(*(place for place in range(15) if place not in _OPTIONAL_PLACES))
_NO_OPTIONS = (None,) * len(_OPTIONAL_PLACES)
_INSERT_PLAIN = with_nulls(QUERIES["insert"], [place in _OPTIONAL_PLACES for place in range(15)])
# An ack's error columns: error_type, error_message, error_traceback, error_args.
_NO_ERROR = (None,) * 4
_ACK_NO_ERROR = with_nulls(QUERIES["ack"], [False] * 4 + [True] * 4 + [False] * 2)


def _plain_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The bound values of ``_INSERT_PLAIN``; the payload (the last) as a bytearray, which
    the sqlite3 module binds as it is (a bytes it looks up first, as a None)."""
    values: tuple[Any, ...] = _BOUND(row)
    if type(values[-1]) is bytes:
        return (*values[:-1], bytearray(values[-1]))
    return values


def message_rows(messages: Sequence[Message], now: float) -> list[tuple[Any, ...]]:
    """The rows to insert, refusing (before anything is written) what cannot be stored."""
    rows = [message_row(message, now) for message in messages]
    seen: set[Any] = set()
    for row in rows:
        if row[0] in seen:
            raise ValueError(f"job id {row[0]!r} appears twice in one enqueue")
        seen.add(row[0])
    return rows


def insert(
    db: Writer,
    messages: Sequence[Message],
    rows: list[tuple[Any, ...]],
    reuse_since: float,
    now: float,
) -> list[str]:
    """Insert the messages whose key no job holds; every message's job id.

    A job id already stored raises ``ValueError``: the caller rolls back.
    """
    try:
        if all(message.key is None for message in messages):
            if all(_OPTIONAL(row) == _NO_OPTIONS for row in rows):
                db.executemany(_INSERT_PLAIN, [_plain_values(row) for row in rows])
            else:
                db.executemany(QUERIES["insert"], rows)
            return [message.id for message in messages]
        return _insert_keyed(db, messages, rows, reuse_since, now)
    except sqlite3.IntegrityError as error:
        raise ValueError(f"a job id of this batch already exists ({error})") from None


def insert_one(row: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """The INSERT of one job without a key, and its values: without its optional
    columns' Nones if it has none of them."""
    if _OPTIONAL(row) == _NO_OPTIONS:
        return _INSERT_PLAIN, _plain_values(row)
    return QUERIES["insert"], row


def _insert_keyed(
    db: Writer,
    messages: Sequence[Message],
    rows: list[tuple[Any, ...]],
    reuse_since: float,
    now: float,
) -> list[str]:
    # The check and the insert share one write transaction: no other process
    # can insert the same key in between. (A partial unique index could not
    # express the reuse window, and its violation would abort the whole batch
    # instead of answering with the existing id.)
    ids: list[str] = []
    batch: dict[str, str] = {}
    for message, row in zip(messages, rows, strict=True):
        key = message.key
        if key is not None:
            horizon = message.key_horizon
            final_since = math.inf if horizon is None else now - horizon
            existing = batch.get(key) or _job_with_key(db, key, reuse_since, final_since)
            if existing is not None:
                ids.append(existing)
                continue
            batch[key] = message.id
        db.execute(*insert_one(row))
        ids.append(message.id)
    return ids


def _job_with_key(db: Writer, key: str, reuse_since: float, final_since: float) -> str | None:
    """The live job with ``key``, else one that succeeded after ``reuse_since``,
    else one that finished in any state after ``final_since``."""
    row = db.execute(QUERIES["job_with_key"], (key, reuse_since, final_since)).fetchone()
    if row is None:
        return None
    # A caller's connection may read text as bytes (its text_factory).
    job_id = row[0]
    return job_id.decode("utf-8", "surrogateescape") if isinstance(job_id, bytes) else str(job_id)


# -- acks and claims --------------------------------------------------------------------


def store_ack(db: sqlite3.Connection, ack: Ack) -> bool:
    """Record one outcome, fenced by the delivery's token; whether it was current."""
    seq = ack.token & SEQ_BITS
    if ack.columns is None:
        cursor = db.execute(QUERIES["ack_delete"], (seq, ack.token))
    else:
        columns = ack.columns
        if columns[4:] == _NO_ERROR:
            cursor = db.execute(_ACK_NO_ERROR, (*columns[:4], seq, ack.token))
        else:
            cursor = db.execute(QUERIES["ack"], (*columns, seq, ack.token))
    return cursor.rowcount == 1


def claim_rows(  # noqa: PLR0917 - the claim's values, in the statement's order
    db: sqlite3.Connection,
    queues: tuple[str, ...] | None,
    limit: int,
    now: float,
    until: float,
    holder: str | None = None,
) -> list[Any]:
    """Mark up to ``limit`` ready jobs running until ``until``; their rows, in claim order.

    No stored value can fail it: the statement's arithmetic takes any type
    (``attempt + 1`` on text is 1, past the largest integer a float), and
    a text that is not UTF-8 is read again, escaped (``row_delivery`` then
    makes that job a defect).
    """
    names = _queue_names(db) if queues is None else list(queues)
    seqs = _candidates(db, names, limit, now, by_queue=queues is not None)
    if not seqs:
        return []
    marks = ", ".join("?" * len(seqs))
    try:
        rows = db.execute(QUERIES["claim"].format(seqs=marks), (until, holder, *seqs)).fetchall()
    except sqlite3.OperationalError as error:
        if not undecodable(error):
            raise
        # The update is done (SQLite makes every change of an UPDATE ...
        # RETURNING at its first step): read its rows again, escaped.
        rows = fetch_escaped(db, QUERIES["claimed"].format(seqs=marks), seqs)
    order = {seq: index for index, seq in enumerate(seqs)}
    rows.sort(key=lambda row: order[row[0]])  # RETURNING comes in no set order
    return rows


def _candidates(
    db: sqlite3.Connection, names: list[str], limit: int, now: float, *, by_queue: bool
) -> list[int]:
    """The seqs to claim, in claim order.

    Each queue's best ``limit`` come from its index; merged, they are
    ordered by the queue's rank in ``names`` (``by_queue``), then priority,
    then due, then age.
    """
    if not names:
        return []
    parts: list[str] = []
    params: list[Any] = []
    for rank, name in enumerate(names):
        value: Any = name
        if type(name) is str and not is_text(name):
            # A name read back from bytes that are not UTF-8: matched byte for byte.
            parts.append(_PER_QUEUE_CAST)
            value = name.encode("utf-8", "surrogateescape")
        else:
            parts.append(_PER_QUEUE)
        params += [rank if by_queue else 0, value, now, limit]
    sql = " UNION ALL ".join(parts)
    if len(names) > 1:
        sql = QUERIES["candidates_in_order"].format(parts=sql)
        params.append(limit)
    else:
        sql = QUERIES["candidates"].format(parts=sql)
    return [row[0] for row in db.execute(sql, params)]


_PER_QUEUE = QUERIES["candidates_in_queue"].format(queue="?")
_PER_QUEUE_CAST = QUERIES["candidates_in_queue"].format(queue="CAST(? AS TEXT)")


def dead_letter_lapsed(db: sqlite3.Connection, now: float) -> None:
    """Lapsed jobs delivered ``max_deliveries`` times (by default ``DEFAULT_MAX_DELIVERIES``)
    go to the dead-letter set: a job that kills every worker running it ends there."""
    doomed = fetch(db, QUERIES["lapsed"], (now, DEFAULT_MAX_DELIVERIES))
    for seq, attempt in doomed:
        db.execute(QUERIES["dead_letter"], (now, *error_row(lapsed_error(attempt)), seq))


def _queue_names(db: sqlite3.Connection) -> list[str]:
    """Queues with live jobs: one index seek per queue (a skip scan)."""
    return [row[0] for row in fetch(db, QUERIES["queue_names"])]
