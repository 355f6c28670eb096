"""Enqueueing with the caller's own ``sqlite3`` connection, inside the caller's transaction.

``task.options(connection=conn).delay(...)`` writes the job's row with
``conn``: the job exists exactly when the caller commits, and never if the
caller rolls back (the ``Transactional`` capability). The connection must
be to the broker's file; any other is refused before anything is written.

What the caller's connection is in:

- a transaction (``conn.in_transaction``): the rows go in under a
  savepoint, so that a batch that fails (an id already stored) leaves the
  caller's transaction as it was;
- none, in the sqlite3 module's default mode: ``BEGIN IMMEDIATE``, left
  open for the caller to commit, as the module itself would have opened
  one before the first insert (immediate: the key check and the insert
  must not let another process in between);
- none, in autocommit mode (``isolation_level=None``, or ``autocommit=True``
  on Python 3.12+): a transaction of its own, committed at once.

SQLite lets one writer in at a time: from its first write until it
commits, the caller's transaction holds the file's write lock, and every
worker's claims and acks wait for it (``busy_timeout``). Keep it short.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..._errors import ConfigurationError

_SAVEPOINT = "offload_enqueue"


def callers_connection(connection: Any, path: str) -> sqlite3.Connection:
    """``connection`` if it is a sqlite3 connection to the file ``path``; else say what to pass."""
    if not isinstance(connection, sqlite3.Connection):
        raise ConfigurationError(
            f"options(connection=...) on a SQLite app takes a sqlite3.Connection to {path}, "
            f"not a {type(connection).__module__}.{type(connection).__qualname__} (enqueueing "
            "in a PostgreSQL transaction takes a postgresql:// app)"
        )
    opened = _main_file(connection)
    if not _same_file(opened, path):
        raise ConfigurationError(
            f"options(connection=...) got a sqlite3 connection to {opened or 'a memory database'}"
            f", but this app's jobs are in {path}: pass a connection opened with "
            f"sqlite3.connect({path!r}), so that the job commits with your transaction"
        )
    return connection


def _main_file(connection: sqlite3.Connection) -> str:
    """The file of the connection's main database ('' for a memory or temporary one)."""
    cursor = connection.cursor()
    cursor.row_factory = None  # the caller's row factory may make rows of any shape
    for _, name, file in cursor.execute("PRAGMA database_list").fetchall():
        if name in ("main", b"main"):
            return file.decode() if isinstance(file, bytes) else str(file or "")
    return ""


def _same_file(opened: str, path: str) -> bool:
    if not opened:
        return False
    if os.path.realpath(opened) == path:
        return True
    try:  # another name for the same file (a hard link, a case-insensitive disk)
        return os.path.samefile(opened, path)
    except OSError:
        return False


@contextlib.contextmanager
def callers_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """A cursor writing in the caller's transaction; what it wrote undone if the block fails."""
    cursor = connection.cursor()
    cursor.row_factory = None
    if connection.in_transaction:
        cursor.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            yield cursor
        except BaseException:
            if connection.in_transaction:  # some errors roll the whole transaction back
                cursor.execute(f"ROLLBACK TO {_SAVEPOINT}")
                cursor.execute(f"RELEASE {_SAVEPOINT}")
            raise
        cursor.execute(f"RELEASE {_SAVEPOINT}")
        return
    cursor.execute("BEGIN IMMEDIATE")
    try:
        yield cursor
        if _commits_each_statement(connection):
            cursor.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            cursor.execute("ROLLBACK")
        raise


def _commits_each_statement(connection: sqlite3.Connection) -> bool:
    """Whether the connection is in autocommit mode: nobody would commit what it wrote."""
    autocommit = getattr(connection, "autocommit", None)  # Python 3.12+
    if autocommit is True or autocommit is False:
        return autocommit
    return connection.isolation_level is None  # the legacy transaction control
