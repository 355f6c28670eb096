"""The SQLite broker's schema and SQL: migrations, rows to messages and back, statements.

``offload_meta`` holds ``schema_version``: the number of migrations
applied. Opening a database applies the missing ones in one ``BEGIN
IMMEDIATE`` transaction (many processes may open the file at once: the
write lock makes one of them migrate and the others see the result), and
refuses a database migrated by a newer offload than this one.

A migration is only ever appended, never edited: a released database has
run the old text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from .._errors import ConfigurationError
from .._message import ErrorInfo, JobInfo, Message, State
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
)

SCHEMA_VERSION = len(MIGRATIONS)

# -- rows and messages ---------------------------------------------------------

MESSAGE_COLUMNS = (
    "id, task, queue, priority, eta, attempt, max_deliveries, key, timeout, retries, "
    "created, payload, result_ttl, meta"
)
INFO_COLUMNS = (
    "id, task, queue, state, attempt, priority, eta, created, finished, key, "
    "max_deliveries, payload, result, error_type, error_message, error_traceback"
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


def row_message(row: Sequence[Any]) -> Message:
    (id_, task, queue, priority, eta, attempt, max_deliveries, key, timeout, retries) = row[:10]
    created, payload, result_ttl, meta = row[10:]
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
        meta=None if meta is None else json.loads(meta),
    )


def error_columns(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None]:
    if error is None:
        return None, None, None
    return error.type, error.message, error.traceback


def row_info(row: Sequence[Any]) -> JobInfo:
    error_type, error_message, error_traceback = row[13:]
    return JobInfo(
        id=row[0],
        task=row[1],
        queue=row[2],
        state=State(row[3]),
        attempt=row[4],
        priority=row[5],
        eta=row[6],
        created=row[7],
        finished=row[8],
        key=row[9],
        max_deliveries=row[10],
        payload=row[11],
        result=row[12],
        error=None
        if error_type is None
        else ErrorInfo(error_type, error_message or "", error_traceback or ""),
    )


# -- the broker's statements ---------------------------------------------------

_READY = f"{LIVE} AND due <= ?"
# The token fences a claim. Low 40 bits: the job's seq (so tokens are unique
# across jobs: a worker keys what it runs by token; seq stays below 2**40, a
# trillion jobs); above: the job's claims so far.
_CLAIM = (
    "UPDATE jobs SET state = 'running', attempt = attempt + 1, due = ?, "
    "token = (((token >> 40) + 1) << 40) | seq "
    "WHERE seq IN ({seqs}) RETURNING seq, token, " + MESSAGE_COLUMNS
)
FENCE = "id = ? AND token = ? AND state = 'running'"
_ACK = (
    "UPDATE jobs SET state = ?, finished = ?, expires = ?, result = ?, "
    f"error_type = ?, error_message = ?, error_traceback = ? WHERE {FENCE}"
)


class Ack(NamedTuple):
    id: str
    token: int
    columns: tuple[Any, ...] | None  # state, finished, expires, result, error; None: delete


class Claim(NamedTuple):
    queues: tuple[str, ...] | None
    limit: int
    lease: float


Write = Ack | Claim


def store_ack(db: sqlite3.Connection, ack: Ack) -> bool:
    """Record one outcome, fenced by the delivery's token; whether it was current."""
    if ack.columns is None:
        cursor = db.execute(f"DELETE FROM jobs WHERE {FENCE}", (ack.id, ack.token))
    else:
        cursor = db.execute(_ACK, (*ack.columns, ack.id, ack.token))
    return cursor.rowcount == 1


def claim_rows(
    db: sqlite3.Connection, queues: tuple[str, ...] | None, limit: int, now: float, until: float
) -> list[Any]:
    """Mark up to ``limit`` ready jobs running until ``until``; their rows, in claim order."""
    names = _queue_names(db) if queues is None else list(queues)
    seqs = _candidates(db, names, limit, now, by_queue=queues is not None)
    if not seqs:
        return []
    marks = ", ".join("?" * len(seqs))
    rows = db.execute(_CLAIM.format(seqs=marks), (until, *seqs)).fetchall()
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
    per_queue = (
        f"SELECT * FROM (SELECT seq, ? AS rank, priority, due FROM jobs WHERE queue = ? "
        f"AND {_READY} ORDER BY priority DESC, due, seq LIMIT ?)"
    )
    params: list[Any] = []
    for rank, name in enumerate(names):
        params += [rank if by_queue else 0, name, now, limit]
    sql = " UNION ALL ".join([per_queue] * len(names))
    if len(names) > 1:
        sql = f"SELECT * FROM ({sql}) ORDER BY rank, priority DESC, due, seq LIMIT ?"
        params.append(limit)
    return [row[0] for row in db.execute(sql, params)]


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


def key_is_held(db: sqlite3.Connection, key: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM jobs WHERE key = ? AND state IN ('queued', 'retrying', 'running')",
        (key,),
    ).fetchone()
    return row is not None


def dead_letter_lapsed(db: sqlite3.Connection, now: float) -> None:
    """Lapsed jobs delivered ``max_deliveries`` times go to the dead-letter set."""
    doomed = db.execute(
        "SELECT seq, attempt FROM jobs WHERE state = 'running' AND due <= ? "
        "AND max_deliveries IS NOT NULL AND attempt >= max_deliveries",
        (now,),
    ).fetchall()
    for seq, attempt in doomed:
        db.execute(
            "UPDATE jobs SET state = 'failed', finished = ?, expires = NULL, "
            "error_type = ?, error_message = ?, error_traceback = ? WHERE seq = ?",
            (now, *error_columns(lapsed_error(attempt)), seq),
        )


def _queue_names(db: sqlite3.Connection) -> list[str]:
    """Queues with live jobs: one index seek per queue (a skip scan)."""
    rows = db.execute(
        "WITH RECURSIVE q(name) AS ("
        f" SELECT (SELECT min(queue) FROM jobs WHERE {LIVE})"
        f" UNION ALL SELECT (SELECT min(queue) FROM jobs WHERE {LIVE} AND queue > q.name)"
        " FROM q WHERE q.name IS NOT NULL"
        ") SELECT name FROM q WHERE name IS NOT NULL"
    ).fetchall()
    return [row[0] for row in rows]
