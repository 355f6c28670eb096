"""The SQLite broker's one connection to its file, shared by the broker and its inspector.

Concurrency inside a process: one connection, guarded by a lock. SQLite
serialises writers anyway, and nearly every call writes; a Python lock
queues this process's threads (dispatcher, pool threads acking, heartbeat,
inspection) in order. The sqlite3 module releases the GIL while SQLite
works, so other threads keep running.

Between processes, a statement that meets another process's write lock is
tried again here (``patient``), not by SQLite's busy handler: that one
sleeps 1 ms, then 2, 5, 10 ms..., while a worker's write transaction holds
the lock for a tenth of a millisecond or so; two busy workers then spent
much of their time asleep with the lock free. The tries here come every
0.1 ms at first, up to 1 ms apart, and stop after ``busy_timeout_ms`` with
SQLite's own error ("database is locked"), as its handler would.

The file is created readable by its owner only (0600; SQLite gives its
-wal and -shm files the same mode): jobs carry arguments and results.

What is read back is never trusted: a SQLite column holds a value of any
type, whatever its declared one, and anyone who can open the file can
write it. Text that is not UTF-8 is read again with its bad bytes escaped
rather than failing the statement that met it (``fetch``); ``_sql_rows``
then shows those rows as corrupt.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ..._errors import ConfigurationError
from .schema import QUERIES, migrate

SYNCHRONOUS = ("normal", "full")
"""The ``?synchronous=`` values offered (SQLite's names; OFF would lose acknowledged jobs)."""

T = TypeVar("T")

_SQLITE_BUSY = 5  # the primary result code; extended ones (BUSY_SNAPSHOT, ...) share it
# Seconds between tries of a lock another process holds: soon after it frees
# (a worker's write transaction is short), then less often for a long one (a
# big enqueue), so that a waiting process does not take a core from the holder.
_PAUSES = (0.0001, 0.0001, 0.0002, 0.0003, 0.0005, 0.0007)
_LONGEST_PAUSE = 0.001


class Database:
    """The connection to one database file, its lock, and its write transactions."""

    def __init__(self, path: str, busy_timeout_ms: int, synchronous: str = "normal") -> None:
        self.path = path
        self.lock = threading.Lock()
        self._busy_timeout_ms = busy_timeout_ms
        if synchronous.lower() not in SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous={synchronous[:40]!r}: choose normal (the default: safe against a "
                "crashed process) or full (safe against a power cut too, slower)"
            )
        self.synchronous = synchronous.upper()
        _create_private(path)
        try:
            self.connection = self._connect()
        except sqlite3.DatabaseError as error:
            _refuse_not_a_database(path, error)
            raise
        try:
            migrate(self.connection, path)
            # From here on, this module waits for other processes (``patient``).
            self.connection.execute("PRAGMA busy_timeout = 0")
        except BaseException as error:
            self.connection.close()
            if isinstance(error, sqlite3.DatabaseError):
                _refuse_not_a_database(path, error)
            raise

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; we BEGIN ourselves.
        db = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,  # shared by this process's threads, under self.lock
            cached_statements=256,
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            mode = self._enable_wal(db)
        except BaseException:
            db.close()
            raise
        if str(mode).lower() != "wal" and self.path != ":memory:":
            db.close()
            raise ConfigurationError(
                f"{self.path}: SQLite could not switch the database to WAL mode (it is in "
                f"{mode!r} mode); offload needs WAL so that workers and producers do not block "
                "each other. Put the file on a local disk (not a network file system)."
            )
        # Under WAL, NORMAL syncs the WAL at checkpoints, not at each commit:
        # commits stay atomic and a crashed or killed process loses nothing,
        # but a power cut or OS crash may roll back the last few commits.
        # FULL syncs at every commit: a stored job survives a power cut too.
        db.execute(f"PRAGMA synchronous = {self.synchronous}")  # one of SYNCHRONOUS
        return db

    def _enable_wal(self, db: sqlite3.Connection) -> str:
        """Switch to WAL, retrying while another process holds the file.

        The switch needs an exclusive lock, and SQLite may answer "locked"
        at once, without its busy handler, when several processes create
        the file together: retry for as long as busy_timeout allows.
        """
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def patient(self, call: Callable[[], T]) -> T:
        """``call()``, tried again while another process holds the file, up to busy_timeout.

        ``call`` is one statement outside a transaction, or a BEGIN: a
        statement refused as busy changed nothing (SQLite takes the lock it
        needs before its first change), so trying it again is safe. The
        caller holds ``self.lock``.
        """
        deadline = None  # read at the first refusal: the common path reads no clock
        pauses = iter(_PAUSES)
        while True:
            try:
                return call()
            except sqlite3.OperationalError as error:
                if not _busy(error):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._busy_timeout_ms / 1000
                if now >= deadline:
                    raise  # "database is locked", as SQLite's busy handler says it
                time.sleep(min(next(pauses, _LONGEST_PAUSE), deadline - now))

    def run(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """``call(connection)`` (one statement, its own transaction) under the lock, ``patient``."""
        with self.lock:
            return self.patient(lambda: call(self.connection))

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: the write lock is taken at BEGIN, not at the first write."""
        with self.lock:
            db = self.connection
            self.patient(lambda: db.execute("BEGIN IMMEDIATE"))
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT too: never leave it open
                    db.execute("ROLLBACK")
                raise

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of a query (``fetch``), under the lock."""
        return self.run(lambda db: fetch(db, sql, params))

    def change(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement (its own transaction), under the lock; rows changed."""
        return self.run(lambda db: db.execute(sql, params).rowcount)

    def data_version(self) -> int:
        """Changes when another connection commits: its own commits leave it as it is."""
        return self.run(lambda db: int(db.execute(QUERIES["data_version"]).fetchone()[0]))

    def close(self) -> None:
        with self.lock:
            self.connection.close()


def _busy(error: sqlite3.OperationalError) -> bool:
    """Another connection holds a lock this statement needs (SQLITE_BUSY and its kinds)."""
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:  # SQLite's message for SQLITE_BUSY (SQLITE_LOCKED's differs)
        return str(error) == "database is locked"
    return bool(code & 0xFF == _SQLITE_BUSY)


def fetch(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """The rows of a query, even if a stored text is not UTF-8.

    The sqlite3 module fails the whole statement on such a text; the query
    is then run again with the bad bytes read as lone surrogates (which
    ``_sql_rows.is_text`` refuses: that row shows as corrupt, the others as
    they are). The caller holds the connection's lock.
    """
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as error:
        if not undecodable(error):
            raise
    return fetch_escaped(db, sql, params)


def fetch_escaped(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of a query, text read with its bad bytes escaped (the lock held)."""
    db.text_factory = _escaped
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.text_factory = str


def with_nulls(sql: str, nulls: Sequence[bool]) -> str:
    """``sql`` with NULL written in for each ``?`` whose flag in ``nulls`` is set.

    The sqlite3 module binds an int, a float, a str or a bytearray as it is,
    but looks any other value, None included, up in its adapter registry
    first (a tuple built and hashed, two attribute lookups): about 3,300
    instructions per None, more than the rest of its binding. ``sql`` takes
    its parameters as plain ``?`` (not ``?1``) and holds no ``?`` elsewhere.
    """
    pieces = sql.split("?")
    if len(pieces) != len(nulls) + 1:
        raise ValueError(f"{len(nulls)} flags for {len(pieces) - 1} marks: {sql[:60]!r}")
    marks = ["NULL" if null else "?" for null in nulls]
    return pieces[0] + "".join(m + piece for m, piece in zip(marks, pieces[1:], strict=True))


def undecodable(error: sqlite3.OperationalError) -> bool:
    """The sqlite3 module met text that is not UTF-8 ("Could not decode to UTF-8 column ...")."""
    return "decode" in str(error)


def _escaped(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _refuse_not_a_database(path: str, error: sqlite3.DatabaseError) -> None:
    """Say what to do about a file that is not a database ("file is not a database").

    An OperationalError (locked, read-only, ...) is left to say what it says.
    """
    if not isinstance(error, sqlite3.OperationalError):
        raise ConfigurationError(
            f"{path} cannot be used as an offload database ({error}): point the URL "
            "at a new file or at one that offload created"
        ) from error


def _create_private(path: str) -> None:
    """Create the database file readable and writable by its owner only (0600).

    Jobs carry arguments and results, often credentials. SQLite gives its
    -wal and -shm files the database file's mode. A file that exists keeps
    the mode its owner chose.
    """
    if path in ("", ":memory:"):
        return
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # it exists (or cannot be made: sqlite3 then says why)
        return
    os.close(descriptor)
