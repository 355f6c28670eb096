"""The SQLite broker's schema and SQL: migrations, rows to messages and back, statements.

``offload_meta`` holds ``schema_version``: the number of migrations
applied. Opening a database applies the missing ones in one ``BEGIN
IMMEDIATE`` transaction (many processes may open the file at once: the
write lock makes one of them migrate and the others see the result), and
refuses a database migrated by a newer offload than this one.

A migration is only ever appended, never edited: a released database has
run the old text.

What is read back is never trusted: a SQLite column holds a value of any
type, whatever its declared one, and anyone who can open the file can
write it. A claimed row is decoded through ``read_delivery`` (a corrupt
field makes that job alone a defect, dead-lettered by the runner), an
inspected row through ``row_info`` (a corrupt job shows as failed), and
text that is not UTF-8 is read again with its bad bytes escaped rather
than failing the statement that met it (``fetch``).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from .._errors import ConfigurationError, MessageRejected
from .._message import (
    DEFAULT_MAX_DELIVERIES,
    Delivery,
    ErrorInfo,
    JobInfo,
    Message,
    State,
    read_delivery,
    storable,
)
from ._base import lapsed_error

MINIMUM_SQLITE = (3, 35, 0)
"""``UPDATE ... RETURNING`` arrived in SQLite 3.35 (2021)."""

# Live states, spelled once: a partial index is only used by a query whose
# WHERE clause repeats its condition word for word.
LIVE = "state IN ('queued', 'retrying', 'running')"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: jobs, and the indexes of the claim, lease and prune queries.
    (
        """
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- age order; never reused (fencing)
            id TEXT NOT NULL UNIQUE,
            task TEXT NOT NULL,
            queue TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL CHECK (state IN
                ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
            due REAL NOT NULL,  -- queued/retrying: claimable from; running: lease end
            eta REAL,
            attempt INTEGER NOT NULL DEFAULT 0,
            token INTEGER NOT NULL DEFAULT 0,
            max_deliveries INTEGER,
            key TEXT,
            timeout REAL,
            retries INTEGER,
            created REAL NOT NULL,
            payload BLOB,
            result_ttl REAL,
            meta TEXT,
            finished REAL,
            expires REAL,  -- when prune deletes it; NULL while live and for failed jobs
            result BLOB,
            error_type TEXT,
            error_message TEXT,
            error_traceback TEXT
        )
        """,
        # The claim: per queue, highest priority, then earliest due, then age
        # (seq: the rowid, implicitly the last column of every index).
        f"CREATE INDEX jobs_claim ON jobs (queue, priority DESC, due) WHERE {LIVE}",
        # Lapsed leases, for the dead-letter sweep of every claim: running jobs only.
        "CREATE INDEX jobs_lease ON jobs (due) WHERE state = 'running'",
        "CREATE INDEX jobs_key ON jobs (key) WHERE key IS NOT NULL",
        "CREATE INDEX jobs_expires ON jobs (expires) WHERE expires IS NOT NULL",
    ),
    # 2: the exception's args as JSON text (ErrorInfo.args), to rebuild it for the producer.
    ("ALTER TABLE jobs ADD COLUMN error_args TEXT",),
)

SCHEMA_VERSION = len(MIGRATIONS)

# -- rows and messages ---------------------------------------------------------

MESSAGE_COLUMNS = (
    "id, task, queue, priority, eta, attempt, max_deliveries, key, timeout, retries, "
    "created, payload, result_ttl, meta"
)
INFO_COLUMNS = (
    "id, task, queue, state, attempt, priority, eta, created, finished, key, "
    "max_deliveries, payload, result, error_type, error_message, error_traceback, error_args"
)
INSERT = (
    "INSERT INTO jobs (id, task, queue, priority, state, due, eta, attempt, max_deliveries, "
    "key, timeout, retries, created, payload, result_ttl, meta) "
    "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def check_sqlite_version() -> None:
    if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
        needed = ".".join(map(str, MINIMUM_SQLITE))
        raise ConfigurationError(
            f"the SQLite broker needs SQLite {needed} or newer (for UPDATE ... RETURNING); "
            f"this Python's sqlite3 module uses SQLite {sqlite3.sqlite_version}. Use a newer "
            "Python build (python.org and most distributions ship a recent SQLite), or "
            "another broker."
        )


def migrate(connection: sqlite3.Connection, path: str) -> int:
    """Bring the schema up to date, in one transaction; the version it is at."""
    if _version(connection) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the usual case: a read, no write lock
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS offload_meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID"
        )
        version = _version(connection)  # again, under the write lock
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{path} has offload schema version {version}, but this offload only knows "
                f"versions up to {SCHEMA_VERSION}: it was written by a newer offload. "
                "Upgrade offload (pip install -U offload) in this environment."
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(
            "INSERT OR REPLACE INTO offload_meta (name, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _version(connection: sqlite3.Connection) -> int:
    try:
        row = connection.execute(
            "SELECT value FROM offload_meta WHERE name = 'schema_version'"
        ).fetchone()
    except sqlite3.OperationalError:  # no offload_meta table: a new database
        return 0
    return 0 if row is None else int(row[0])


def message_row(message: Message, now: float) -> tuple[Any, ...]:
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


def row_delivery(row: Sequence[Any], until: float) -> Delivery:
    """A claimed row (seq, token, MESSAGE_COLUMNS) as a delivery: a defect if a field is corrupt."""
    job_id = row[2]
    if type(job_id) is not str or not is_text(job_id):
        job_id = shown(job_id)  # a name for the defect; the ack finds the row by its token
    return read_delivery(job_id, row[1], until, functools.partial(row_message, row[2:]))


def row_message(row: Sequence[Any]) -> Message:
    """The message of a stored row (MESSAGE_COLUMNS); raises if a field cannot be decoded.

    Only decoding happens here: ``read_delivery`` checks every field.
    """
    (id_, task, queue, priority, eta, attempt, max_deliveries, key, timeout, retries) = row[:10]
    created, payload, result_ttl, meta = row[10:]
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
        raise ValueError(f"meta {text!r:.60} is not JSON ({error})") from None


def error_columns(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None]:
    if error is None:
        return None, None, None
    return error.type, error.message, error.traceback


def error_row(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None, str | None]:
    """The four error columns of this schema: type, message, traceback, args."""
    if error is None:
        return None, None, None, None
    return error.type, error.message, error.traceback, error.args


# -- reading rows back -------------------------------------------------------------

_STATES = {state.value: state for state in State}
_NONE = type(None)
# The types each column of INFO_COLUMNS may hold, by position. Message fields
# (a claim dead-letters a job with a bad one) and outcome fields (an ack or a
# nack writes them anew, so they only count once the job has finished).
_MESSAGE_FIELDS = (
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
_OUTCOME_FIELDS = (
    (8, "finished", (int, float, _NONE)),
    (12, "result", (bytes, _NONE)),
    (13, "error_type", (str, _NONE)),
    (14, "error_message", (str, _NONE)),
    (15, "error_traceback", (str, _NONE)),
    (16, "error_args", (str, _NONE)),
)
_CORRUPT = f"{MessageRejected.__module__}.{MessageRejected.__qualname__}"


def row_info(row: Sequence[Any]) -> JobInfo:
    """One job as inspection shows it (INFO_COLUMNS; PostgreSQL's rows lack error_args).

    Never raises: a producer polling many jobs must keep settling the others.
    A job with a field offload would not have written (the database was
    damaged, or written by something else) shows as failed, with an error
    that names the field (or the error it failed with, if it has one).
    """
    values = (*row, None) if len(row) == 16 else tuple(row)
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
        error=None
        if error_type is None
        else ErrorInfo(error_type, error_message or "", error_traceback or "", error_args),
    )


def state_of(value: Any) -> State:
    """A stored state; one offload does not know (a CHECK constraint bypassed) reads as failed."""
    return _STATES.get(value, State.FAILED) if type(value) is str else State.FAILED


def is_text(value: str) -> bool:
    """Whether ``value`` is storable UTF-8 (no lone surrogate, as ``fetch`` reads bad bytes)."""
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


_Fields = tuple[tuple[int, str, tuple[type, ...]], ...]


def _problem(values: Sequence[Any], fields: _Fields) -> str | None:
    for index, name, kinds in fields:
        value = values[index]
        if type(value) not in kinds:
            return f"its {name} is {shown(value)}"
        if type(value) is str and not is_text(value):
            return f"its {name} {shown(value)} is not UTF-8 text"
    return None


def _corrupt_info(values: Sequence[Any], problem: str) -> JobInfo:
    """A job whose stored record offload cannot read whole: failed, saying why."""

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
            _CORRUPT,
            f"the stored record of job {job_id} is corrupt: {problem}. Something other than "
            "offload wrote to the database, or it was damaged; enqueue the call again (or "
            "repair the row and retry the job)",
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


def _escaped(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _undecodable(error: sqlite3.OperationalError) -> bool:
    """The sqlite3 module met text that is not UTF-8 ("Could not decode to UTF-8 column ...")."""
    return "decode" in str(error)


def fetch(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """The rows of a query, even if a stored text is not UTF-8.

    The sqlite3 module fails the whole statement on such a text; the query
    is then run again with the bad bytes read as lone surrogates (which
    ``is_text`` refuses: that row shows as corrupt, the others as they are).
    """
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as error:
        if not _undecodable(error):
            raise
    return _fetch_escaped(db, sql, params)


def _fetch_escaped(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    db.text_factory = _escaped  # the caller holds the connection's lock
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.text_factory = str


# -- the broker's statements ---------------------------------------------------

# A due that is not a number (text sorts after every number in SQLite) would
# never come: such a job is claimable at once, and the claim sets its due.
_READY = f"{LIVE} AND (due <= ? OR due >= '')"
# The token fences a claim. Low 40 bits: the job's seq (so tokens are unique
# across jobs: a worker keys what it runs by token; seq stays below 2**40, a
# trillion jobs); above: the job's claims so far.
SEQ_BITS = (1 << 40) - 1
_CLAIM = (
    "UPDATE jobs SET state = 'running', attempt = attempt + 1, due = ?, "
    "token = (((token >> 40) + 1) << 40) | seq "
    "WHERE seq IN ({seqs}) RETURNING seq, token, " + MESSAGE_COLUMNS
)
_CLAIMED = "SELECT seq, token, " + MESSAGE_COLUMNS + " FROM jobs WHERE seq IN ({seqs})"
# By seq (the rowid, read from the token), not by id: the fastest lookup, and
# it finds a job whose stored id is corrupt.
FENCE = "seq = ? AND token = ? AND state = 'running'"
_ACK = (
    "UPDATE jobs SET state = ?, finished = ?, expires = ?, result = ?, "
    f"error_type = ?, error_message = ?, error_traceback = ?, error_args = ? WHERE {FENCE}"
)


def fence(token: int) -> tuple[int, int]:
    """The parameters of ``FENCE`` for a delivery's token."""
    return token & SEQ_BITS, token


class Ack(NamedTuple):
    token: int
    columns: tuple[Any, ...] | None  # state, finished, expires, result, error; None: delete


class Claim(NamedTuple):
    queues: tuple[str, ...] | None
    limit: int
    lease: float


Write = Ack | Claim


def store_ack(db: sqlite3.Connection, ack: Ack) -> bool:
    """Record one outcome, fenced by the delivery's token; whether it was current."""
    seq = ack.token & SEQ_BITS
    if ack.columns is None:
        cursor = db.execute(f"DELETE FROM jobs WHERE {FENCE}", (seq, ack.token))
    else:
        cursor = db.execute(_ACK, (*ack.columns, seq, ack.token))
    return cursor.rowcount == 1


def claim_rows(
    db: sqlite3.Connection, queues: tuple[str, ...] | None, limit: int, now: float, until: float
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
        rows = db.execute(_CLAIM.format(seqs=marks), (until, *seqs)).fetchall()
    except sqlite3.OperationalError as error:
        if not _undecodable(error):
            raise
        # The update is done (SQLite makes every change of an UPDATE ...
        # RETURNING at its first step): read its rows again, escaped.
        rows = _fetch_escaped(db, _CLAIMED.format(seqs=marks), seqs)
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
            parts.append(_PER_QUEUE.format(queue="CAST(? AS TEXT)"))
            value = name.encode("utf-8", "surrogateescape")
        else:
            parts.append(_PER_QUEUE.format(queue="?"))
        params += [rank if by_queue else 0, value, now, limit]
    sql = " UNION ALL ".join(parts)
    # Only seq is read back: the other columns may hold anything.
    if len(names) > 1:
        sql = f"SELECT seq FROM ({sql}) ORDER BY rank, priority DESC, due, seq LIMIT ?"
        params.append(limit)
    else:
        sql = f"SELECT seq FROM ({sql})"
    return [row[0] for row in db.execute(sql, params)]


_PER_QUEUE = (
    "SELECT * FROM (SELECT seq, ? AS rank, priority, due FROM jobs WHERE queue = {queue} "
    f"AND {_READY} ORDER BY priority DESC, due, seq LIMIT ?)"
)


def insert_keyed(
    db: sqlite3.Connection,
    messages: Sequence[Message],
    rows: list[tuple[Any, ...]],
    reuse_since: float,
) -> list[str]:
    """Insert the messages whose key no job holds; every message's job id."""
    # The check and the insert share one BEGIN IMMEDIATE transaction: no
    # other process can insert the same key in between. (A partial unique
    # index could not express the reuse window, and its violation would
    # abort the whole batch instead of answering with the existing id.)
    ids: list[str] = []
    batch: dict[str, str] = {}
    for message, row in zip(messages, rows, strict=True):
        key = message.key
        if key is not None:
            existing = batch.get(key) or _job_with_key(db, key, reuse_since)
            if existing is not None:
                ids.append(existing)
                continue
            batch[key] = message.id
        db.execute(INSERT, row)
        ids.append(message.id)
    return ids


def _job_with_key(db: sqlite3.Connection, key: str, reuse_since: float) -> str | None:
    """The live job with ``key``, else one that succeeded after ``reuse_since``."""
    row = db.execute(
        "SELECT id FROM jobs WHERE key = ? AND (state IN ('queued', 'retrying', 'running') "
        "OR (state = 'succeeded' AND finished > ?)) "
        "ORDER BY state = 'succeeded', seq DESC LIMIT 1",
        (key, reuse_since),
    ).fetchone()
    return None if row is None else str(row[0])


def dead_letter_lapsed(db: sqlite3.Connection, now: float) -> None:
    """Lapsed jobs delivered ``max_deliveries`` times (by default ``DEFAULT_MAX_DELIVERIES``)
    go to the dead-letter set: a job that kills every worker running it ends there."""
    doomed = fetch(
        db,
        "SELECT seq, attempt FROM jobs WHERE state = 'running' AND due <= ? "
        "AND attempt >= coalesce(max_deliveries, ?)",
        (now, DEFAULT_MAX_DELIVERIES),
    )
    for seq, attempt in doomed:
        db.execute(
            "UPDATE jobs SET state = 'failed', finished = ?, expires = NULL, error_type = ?, "
            "error_message = ?, error_traceback = ?, error_args = ? WHERE seq = ?",
            (now, *error_row(lapsed_error(attempt)), seq),
        )


def _queue_names(db: sqlite3.Connection) -> list[str]:
    """Queues with live jobs: one index seek per queue (a skip scan)."""
    rows = fetch(
        db,
        "WITH RECURSIVE q(name) AS ("
        f" SELECT (SELECT min(queue) FROM jobs WHERE {LIVE})"
        f" UNION ALL SELECT (SELECT min(queue) FROM jobs WHERE {LIVE} AND queue > q.name)"
        " FROM q WHERE q.name IS NOT NULL"
        ") SELECT name FROM q WHERE name IS NOT NULL",
    )
    return [row[0] for row in rows]
