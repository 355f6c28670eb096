"""The SQLite broker's schema and SQL: migrations, reading text back, statements.

``offload_meta`` holds ``schema_version``: the number of migrations
applied. Opening a database applies the missing ones in one ``BEGIN
IMMEDIATE`` transaction (many processes may open the file at once: the
write lock makes one of them migrate and the others see the result), and
refuses a database migrated by a newer offload than this one.

A migration is only ever appended, never edited: a released database has
run the old text.

What is read back is never trusted: a SQLite column holds a value of any
type, whatever its declared one, and anyone who can open the file can
write it. Rows are read back through ``_sql_rows``, shared with the
PostgreSQL broker: a claimed row with a corrupt field makes that job alone
a defect (dead-lettered by the runner), an inspected one shows as failed.
What is SQLite's own is below: text that is not UTF-8 is read again with
its bad bytes escaped rather than failing the statement that met it
(``fetch``), and the rows then show as corrupt.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from .._errors import ConfigurationError
from .._message import DEFAULT_MAX_DELIVERIES, Delivery, Message
from ._base import lapsed_error
from ._sql_rows import MESSAGE_COLUMNS, claimed_delivery, error_row, is_text

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

# In the order of message_row (_sql_rows), which builds the rows.
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


# -- reading rows back ------------------------------------------------------------


def row_delivery(row: Sequence[Any], until: float) -> Delivery:
    """A claimed row (seq, token, MESSAGE_COLUMNS) as a delivery: a defect if a field is corrupt."""
    return claimed_delivery(row[1], row[2:], until)


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
