"""A durable broker in one SQLite file: no server, many processes on one machine.

Every worker process opens the same file. SQLite lets one writer in at a
time; a claim takes the write lock (``BEGIN IMMEDIATE``), picks a batch in
priority order and marks it running with one ``UPDATE ... RETURNING``, so
two processes can never claim the same job. A crash loses nothing: a job
is only deleted (or marked finished) by the ack of its current claim, and
a lease that lapses makes it claimable again.

Concurrency inside a process: one connection, guarded by a lock. SQLite
serialises writers anyway, and nearly every call here writes; a Python
lock queues this process's threads (dispatcher, pool threads acking,
heartbeat) in order without SQLite's busy handler, which sleeps in
millisecond steps when two connections collide. The sqlite3 module
releases the GIL while SQLite works, so other threads keep running.
``busy_timeout`` still applies between processes.

Acks and claims go through ``Batcher`` (group commit): the threads whose
calls meet share one write transaction, and each returns once it has
committed. A transaction's fixed cost (the write lock, which every
process shares, and the commit) is then paid per batch, not twice per task.
A write that fails for a value of its own (an outcome the driver cannot
store) fails alone: the writes it met are made again, one by one.

The file is created readable by its owner only (0600; SQLite gives its
-wal and -shm files the same mode): jobs carry arguments and results.
What is read back is never trusted (see ``_sqlite_schema``): one corrupt
row is dead-lettered alone, and inspection shows it as failed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigurationError
from .._message import Delivery, ErrorInfo, JobInfo, Message, Outcome, State
from ._base import stored_error
from ._group_commit import Batcher
from ._sql_rows import INFO_COLUMNS, error_row, message_row, row_info, state_of
from ._sqlite_schema import (
    FENCE,
    INSERT,
    LIVE,
    Ack,
    Claim,
    Write,
    check_sqlite_version,
    claim_rows,
    dead_letter_lapsed,
    fence,
    fetch,
    insert_keyed,
    migrate,
    row_delivery,
    store_ack,
)


class SqliteBroker:
    """Jobs in a SQLite database file, shared by every process that opens it.

    >>> broker = SqliteBroker("offload.db")

    ``result_ttl``: seconds a finished job (and its result) is kept, unless
    its message says otherwise; failed jobs stay until purged.
    ``reuse_window``: seconds after a success during which enqueueing its
    key returns the finished job. ``busy_timeout_ms``: how long a call waits
    for another process's write before failing with "database is locked".
    """

    # Expired results are deleted inside claim or ack at most this often,
    # at most this many at a time (a claim must not hold the lock for long).
    _PRUNE_EVERY = 60.0
    _PRUNE_BATCH = 1000
    # How often an idle worker reads the change counter (seconds): a read of
    # the WAL index in shared memory, no disk access. Each timed sleep costs
    # ~25 us of CPU, so the poll slows down once the file has been quiet for
    # a while: ~3% of a core at 1 ms, ~1% at 5 ms (measured here).
    _POLL = 0.001
    _QUIET_POLL = 0.005
    _QUIET_AFTER = 1.0

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = SYSTEM_CLOCK,
        result_ttl: float = 86400.0,
        reuse_window: float = 0.0,
        busy_timeout_ms: int = 5000,
    ) -> None:
        check_sqlite_version()
        self.path = os.fspath(path)
        self._clock = clock
        self._result_ttl = result_ttl
        self._reuse_window = reuse_window
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = threading.Lock()
        # A write that fails for a value it holds (an outcome the driver cannot
        # store) fails alone: the writes it met are made again one by one.
        self._writes: Batcher[Write, bool | list[Delivery]] = Batcher(
            self._write_together, isolate=_maybe_one_writes_fault
        )
        try:
            _create_private(self.path)
            self._db = self._connect()
            migrate(self._db, self.path)
        except sqlite3.DatabaseError as error:  # not OperationalError: "file is not a database"
            if isinstance(error, sqlite3.OperationalError):
                raise
            raise ConfigurationError(
                f"{self.path} cannot be used as an offload database ({error}): point the URL "
                "at a new file or at one that offload created"
            ) from error
        self._changed = threading.Condition()  # enqueues of this process
        self._epoch = 0
        self._waiting = 0
        self._last_change = 0.0  # time.monotonic() of the last change a wait saw
        self._closed = False
        self._next_prune = 0.0

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; we BEGIN ourselves.
        db = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,  # shared by this process's threads, under self._lock
            cached_statements=256,
        )
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        mode = self._enable_wal(db)
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
        db.execute("PRAGMA synchronous = NORMAL")
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

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: the write lock is taken at BEGIN, not at the first write."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT too: never leave it open
                    db.execute("ROLLBACK")
                raise

    # -- the contract ----------------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        if not messages:
            return []
        now = self._clock.now()
        rows = [message_row(message, now) for message in messages]  # refuses before writing
        if len({row[0] for row in rows}) != len(rows):
            raise ValueError(f"job id {_repeated(rows)!r} appears twice in one enqueue")
        keyed = any(message.key is not None for message in messages)
        with self._write() as db:
            try:
                if not keyed:
                    db.executemany(INSERT, rows)
                    ids = [message.id for message in messages]
                else:
                    ids = insert_keyed(db, messages, rows, now - self._reuse_window)
            except sqlite3.IntegrityError as error:  # an id already stored: all rolls back
                raise ValueError(f"a job id of this batch already exists ({error})") from None
        self._notify()
        return ids

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0:
            return []
        claim = Claim(None if queues is None else tuple(queues), limit, lease)
        return cast("list[Delivery]", self._writes.submit(claim))

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        message = delivery.message
        now = self._clock.now()
        ttl = self._result_ttl if message.result_ttl is None else message.result_ttl
        columns: tuple[Any, ...] | None = None  # a zero TTL keeps nothing: delete
        if outcome.state is State.FAILED or ttl > 0:
            expires = None if outcome.state is State.FAILED else now + ttl
            error = error_row(stored_error(outcome))
            columns = (outcome.state.value, now, expires, outcome.payload, *error)
        return self._writes.submit(Ack(delivery.token, columns)) is True

    def _write_together(self, writes: list[Write]) -> list[bool | list[Delivery]]:
        """Acks and claims of this process's threads in one transaction, one commit.

        A write transaction costs a commit and a turn of the file's write
        lock, which every process shares: a busy worker pays one per batch
        rather than two per task (an ack, then the claim of the slot it
        freed). Each caller hears its answer only once that commit is done.
        Acks go in order, so of two acks of one delivery only the first counts.
        """
        if len(writes) == 1 and isinstance(writes[0], Ack):
            return [self._ack_alone(writes[0])]
        with self._write() as db:
            # BEGIN may have waited for another process's transaction: what
            # this process's threads queued meanwhile joins this one.
            writes = writes + self._writes.more()
            answers: list[bool | list[Delivery]] = [False] * len(writes)
            groups: dict[tuple[tuple[str, ...] | None, float], list[tuple[int, Claim]]] = {}
            for index, write in enumerate(writes):
                if isinstance(write, Claim):
                    groups.setdefault((write.queues, write.lease), []).append((index, write))
            now = self._clock.now()
            for index, write in enumerate(writes):
                if isinstance(write, Ack):
                    answers[index] = store_ack(db, write)
            if now >= self._next_prune:
                self._prune_some(db, now)
            if groups:
                dead_letter_lapsed(db, now)
            claimed = [
                (until, group, claim_rows(db, queues, sum(c.limit for _, c in group), now, until))
                for (queues, lease), group in groups.items()
                for until in (now + lease,)
            ]
        # Committed: decode the rows outside the lock, and deal them out in call
        # order. Nothing here raises: a row that cannot be read is a defect.
        for until, group, rows in claimed:
            deliveries = iter([row_delivery(row, until) for row in rows])
            for index, claim in group:
                answers[index] = list(itertools.islice(deliveries, claim.limit))
        return answers

    def _ack_alone(self, ack: Ack) -> bool:
        """One ack, no other write waiting: one statement, its own transaction.

        Without BEGIN and COMMIT around it, a lone ack (an idle worker's, in
        a round trip) costs one call into SQLite instead of three.
        """
        now = self._clock.now()
        with self._lock:
            stored = store_ack(self._db, ack)
            if now >= self._next_prune:
                self._prune_some(self._db, now)
        return stored

    def nack(
        self,
        delivery: Delivery,
        retry_at: float | None,
        *,
        error: ErrorInfo | None = None,
        penalty: bool = True,
    ) -> bool:
        now = self._clock.now()
        state = State.QUEUED if error is None else State.RETRYING
        # Without an error, the last one (if any) stays.
        errors = (
            ""
            if error is None
            else ", error_type = ?, error_message = ?, error_traceback = ?, error_args = ?"
        )
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET state = ?, due = ?, eta = coalesce(?, eta), "
                f"attempt = attempt - ?{errors} WHERE {FENCE}",
                (
                    state.value,
                    now if retry_at is None else retry_at,
                    retry_at,
                    0 if penalty else 1,
                    *(() if error is None else error_row(error)),
                    *fence(delivery.token),
                ),
            )
        if cursor.rowcount != 1:
            return False
        self._notify()
        return True

    def extend(self, delivery: Delivery, lease: float) -> bool:
        until = self._clock.now() + lease
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET due = ? WHERE {FENCE}",
                (until, *fence(delivery.token)),
            )
        if cursor.rowcount != 1:
            return False
        delivery.lease_until = until
        return True

    def close(self) -> None:
        self._closed = True
        self.interrupt()
        with self._lock:
            self._db.close()

    # -- wake-ups ----------------------------------------------------------------

    def wait_for_messages(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a message may be claimable, ``interrupt()``, or ``timeout``.

        Another process's commit changes ``PRAGMA data_version`` (read every
        millisecond or few, no disk access); an enqueue of this process
        notifies at once. The wait also ends when the next eta or lease
        end (of ``queues``, all for None) comes.
        """
        with self._changed:
            epoch = self._epoch
            self._waiting += 1
        try:
            if self._closed or timeout <= 0:
                return
            version = self._data_version()
            next_due = self._next_due(queues) - self._clock.now()
            # Never less than one poll: a job due now that the caller's claim
            # did not take (another queue, another worker) must not make this spin.
            wait = max(min(timeout, next_due), self._POLL)
            # The poll runs on real time: a fake clock's wait returns early anyway.
            if self._poll(time.monotonic() + wait, epoch, version):
                self._last_change = time.monotonic()
        finally:
            with self._changed:
                self._waiting -= 1

    def _poll(self, end: float, epoch: int, version: int) -> bool:
        """Sleep in short steps until ``end``; ``True`` as soon as something changed."""
        while (remaining := end - time.monotonic()) > 0:
            quiet = time.monotonic() - self._last_change > self._QUIET_AFTER
            with self._changed:
                if self._epoch == epoch:
                    step = self._QUIET_POLL if quiet else self._POLL
                    self._clock.wait(self._changed, min(step, remaining))
                if self._epoch != epoch or self._closed:
                    return True
            if self._data_version() != version:
                return True
        return False

    def interrupt(self) -> None:
        with self._changed:
            self._epoch += 1
            self._changed.notify_all()

    def _notify(self) -> None:
        # The epoch moves even with nobody waiting: a waiter that read it just
        # before this commit must see it moved (its own commits do not change
        # data_version).
        with self._changed:
            self._epoch += 1
            if self._waiting:
                self._changed.notify_all()

    def _data_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _next_due(self, queues: Sequence[str] | None) -> float:
        where, params = _in_queues(queues)
        with self._lock:
            ((due,),) = fetch(self._db, f"SELECT min(due) FROM jobs WHERE {LIVE}{where}", params)
        if due is None:
            return float("inf")
        # Not a number (a corrupt row): claimable now.
        return float(due) if isinstance(due, (int, float)) else 0.0

    # -- inspection -------------------------------------------------------------

    # Inspection never raises because of one row: a corrupt job shows as failed.

    def job(self, job_id: str) -> JobInfo | None:
        with self._lock:
            rows = fetch(self._db, f"SELECT {INFO_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return row_info(rows[0]) if rows else None

    def change_token(self) -> int:
        """Changes when another connection commits: nothing new if it did not."""
        return self._data_version()

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        states: dict[str, State] = {}
        for start in range(0, len(job_ids), 500):  # under SQLite's bound-variable limit
            chunk = job_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = fetch(self._db, f"SELECT id, state FROM jobs WHERE id IN ({marks})", chunk)
            states.update((job_id, state_of(state)) for job_id, state in rows)
        return states

    def counts(self) -> dict[str, dict[State, int]]:
        with self._lock:
            rows = fetch(self._db, "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")
        counts: dict[str, dict[State, int]] = {}
        for queue, state, count in rows:
            by_state = counts.setdefault(queue, {})
            by_state[state_of(state)] = by_state.get(state_of(state), 0) + count
        return counts

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        with self._lock:
            rows = fetch(
                self._db,
                f"SELECT {INFO_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) "
                "AND (?2 IS NULL OR queue = ?2) ORDER BY seq DESC LIMIT ?3",
                (None if state is None else state.value, queue, limit),
            )
        return [row_info(row) for row in rows]

    def cancel(self, job_id: str) -> bool:
        waiting = "id = ?1 AND state IN ('queued', 'retrying')"
        with self._write() as db:
            # A zero TTL keeps nothing, as for an ack.
            deleted = db.execute(
                f"DELETE FROM jobs WHERE {waiting} AND coalesce(result_ttl, ?2) <= 0",
                (job_id, self._result_ttl),
            ).rowcount
            updated = db.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ?3, "
                f"expires = ?3 + coalesce(result_ttl, ?2) WHERE {waiting}",
                (job_id, self._result_ttl, self._clock.now()),
            ).rowcount
        return deleted + updated == 1

    def retry(self, job_id: str) -> bool:
        with self._write() as db:
            # The key is compared in SQL, never read: a stored one may not even be text.
            rows = fetch(
                db,
                "SELECT state, EXISTS (SELECT 1 FROM jobs AS other WHERE other.key = jobs.key "
                "AND other.state IN ('queued', 'retrying', 'running')) FROM jobs WHERE id = ?",
                (job_id,),
            )
            if not rows or rows[0][0] not in (State.FAILED.value, State.CANCELLED.value):
                return False
            if rows[0][1]:
                return False  # another job holds the key now: two would run
            db.execute(
                "UPDATE jobs SET state = 'queued', attempt = 0, due = ?, eta = NULL, "
                "finished = NULL, expires = NULL, result = NULL, error_type = NULL, "
                "error_message = NULL, error_traceback = NULL, error_args = NULL WHERE id = ?",
                (self._clock.now(), job_id),
            )
        self._notify()
        return True

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        if not state.finished:
            raise ValueError(
                f"purge deletes finished jobs (succeeded, failed, cancelled), not {state}"
            )
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM jobs WHERE state = ?1 AND (?2 IS NULL OR queue = ?2)",
                (state.value, queue),
            )
        return cursor.rowcount

    def prune(self) -> int:
        with self._lock:
            cursor = self._db.execute("DELETE FROM jobs WHERE expires <= ?", (self._clock.now(),))
        return cursor.rowcount

    # -- internals (the lock held) -------------------------------------------------

    def _prune_some(self, db: sqlite3.Connection, now: float) -> None:
        pruned = db.execute(
            "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE expires <= ? LIMIT ?)",
            (now, self._PRUNE_BATCH),
        ).rowcount
        # A full batch: more are due; carry on at the next claim or ack.
        self._next_prune = now if pruned >= self._PRUNE_BATCH else now + self._PRUNE_EVERY


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


def _maybe_one_writes_fault(error: Exception) -> bool:
    """Whether a failed group commit may be one write's fault: not the database's state.

    An OperationalError (locked, busy, disk full, read-only) would fail every
    write alone as well, each after its own wait.
    """
    return not isinstance(error, sqlite3.OperationalError)


def _repeated(rows: list[tuple[Any, ...]]) -> str:
    seen: set[str] = set()
    for row in rows:
        if row[0] in seen:
            return str(row[0])
        seen.add(row[0])
    return ""


def _in_queues(queues: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    if queues is None:
        return "", ()
    return f" AND queue IN ({', '.join('?' * len(queues))})", tuple(queues)
