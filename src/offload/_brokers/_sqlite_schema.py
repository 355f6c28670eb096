"""The SQLite broker's schema: numbered migrations, and rows to messages and back.

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
from typing import Any

from .._errors import ConfigurationError
from .._message import ErrorInfo, JobInfo, Message, State

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
