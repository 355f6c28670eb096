"""A durable broker in one SQLite file: no server, many processes on one machine.

Every worker process opens the same file. SQLite lets one writer in at a
time; a claim takes the write lock (``BEGIN IMMEDIATE``), picks a batch in
priority order and marks it running with one ``UPDATE ... RETURNING``, so
two processes can never claim the same job. A crash loses nothing: a job
is only deleted (or marked finished) by the ack of its current claim, and
a lease that lapses makes it claimable again.

Inside a process, the broker and its inspector share one connection under
one lock (``connection.Database``, which says why).

Acks and claims go through ``Batcher`` (group commit): the threads whose
calls meet share one write transaction, and each returns once it has
committed. A transaction's fixed cost (the write lock, which every
process shares, and the commit) is then paid per batch, not twice per task.
``ack_and_claim`` is one write of its own: an ack and the claim after it,
always in one transaction, even alone.
A write that fails for a value of its own (an outcome the driver cannot
store) fails alone: the writes it met are made again, one by one.

The file is created readable by its owner only (0600). What is read back
is never trusted: one corrupt row is dead-lettered alone, and inspection
shows it as failed.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from ..._clock import SYSTEM_CLOCK, Clock
from ..._message import Delivery, ErrorInfo, Message, Outcome, State
from .._base import Lease, keep_for_horizon, stored_error
from .._group_commit import Batcher
from .._sql_rows import error_row, message_row
from .connection import Database
from .inspector import SqliteInspector
from .limits import SqliteLimits
from .schedules import SqliteSchedules
from .schema import QUERIES, check_sqlite_version
from .statements import (
    Ack,
    AckClaim,
    Answer,
    Claim,
    Step,
    Write,
    claim_rows,
    dead_letter_lapsed,
    fence,
    insert,
    insert_one,
    message_rows,
    row_delivery,
    store_ack,
)
from .transactional import callers_connection, callers_transaction
from .workers import SqliteRegistry


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
        synchronous: str = "normal",
    ) -> None:
        check_sqlite_version()
        self.path = os.fspath(path)
        # Resolved now: a transactional enqueue compares its caller's file to
        # it, and the working directory may change meanwhile.
        self._resolved = os.path.realpath(self.path)
        self._clock = clock
        self._result_ttl = result_ttl
        self._reuse_window = reuse_window
        # A write that fails for a value it holds (an outcome the driver cannot
        # store) fails alone: the writes it met are made again one by one.
        self._writes: Batcher[Write, Answer] = Batcher(
            self._write_together, isolate=_maybe_one_writes_fault
        )
        self._database = Database(self.path, busy_timeout_ms, synchronous)
        # Read on every lone ack: one attribute each.
        self._lock = self._database.lock
        self._db = self._database.connection
        self._changed = threading.Condition()  # enqueues of this process
        self._epoch = 0
        self._waiting = 0
        self._last_change = 0.0  # time.monotonic() of the last change a wait saw
        self._closed = False
        self._next_prune = 0.0
        self.registry = SqliteRegistry(self._database, clock, self._notify)
        """The worker registry (``WorkerRegistry``): live workers, and who holds what."""
        self._inspector = SqliteInspector(self._database, clock, result_ttl, self._notify)
        self._schedules = SqliteSchedules(self._database)
        self._limits = SqliteLimits(lambda step: cast(float, self._writes.submit(step)))

    @property
    def inspector(self) -> SqliteInspector:
        """What the CLI and handles read, through this broker's connection."""
        return self._inspector

    @property
    def schedules(self) -> SqliteSchedules:
        """Periodic schedules' fire times (``ScheduleStore``), in this file."""
        return self._schedules

    @property
    def limits(self) -> SqliteLimits:
        """Rate and concurrency limits, in rows of this file (``limits``, ``limit_slots``)."""
        return self._limits

    # -- the contract ----------------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        if len(messages) == 1 and messages[0].key is None:
            return self._enqueue_one(messages[0])
        if not messages:
            return []
        now = self._clock.now()
        keep_for_horizon(messages, self._result_ttl)
        rows = message_rows(messages, now)  # refuses before writing
        with self._database.write() as db:  # an id already stored: all rolls back
            ids = insert(db, messages, rows, now - self._reuse_window, now)
        self._notify()
        return ids

    def _enqueue_one(self, message: Message) -> list[str]:
        """One job and no key to look up (the common call): the INSERT alone, in its
        own transaction (atomic, and refused as busy before it changes anything, so
        ``patient`` may try it again). BEGIN and COMMIT as statements of their own
        would cost two more trips into SQLite per call."""
        if message.key_horizon is not None:
            keep_for_horizon((message,), self._result_ttl)
        statement = insert_one(message_row(message, self._clock.now()))  # refuses first
        database = self._database
        try:
            with database.lock:
                database.patient(lambda: database.connection.execute(*statement))
        except sqlite3.IntegrityError as error:
            raise ValueError(f"job id {message.id!r} already exists ({error})") from None
        self._notify()
        return [message.id]

    def enqueue_in(self, messages: Sequence[Message], connection: Any) -> list[str]:
        """``enqueue``, written with the caller's ``sqlite3`` connection to this file.

        The jobs exist once the caller commits (see ``transactional``); this
        process's waiters see the commit as any other process's.
        """
        db = callers_connection(connection, self._resolved)
        if not messages:
            return []
        now = self._clock.now()
        keep_for_horizon(messages, self._result_ttl)
        rows = message_rows(messages, now)
        with callers_transaction(db) as cursor:
            return insert(cursor, messages, rows, now - self._reuse_window, now)

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0:
            return []
        claim = Claim(None if queues is None else tuple(queues), limit, lease)
        return cast("list[Delivery]", self._writes.submit(claim))

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        return self._writes.submit(self._ack_write(delivery, outcome)) is True

    def ack_and_claim(
        self,
        delivery: Delivery,
        outcome: Outcome,
        queues: Sequence[str] | None,
        limit: int,
        lease: float,
    ) -> tuple[bool, list[Delivery]]:
        """``ack`` then ``claim`` in one transaction (which other threads' writes may join)."""
        if limit <= 0:
            return self.ack(delivery, outcome), []
        claim = Claim(None if queues is None else tuple(queues), limit, lease)
        answer = self._writes.submit(AckClaim(self._ack_write(delivery, outcome), claim))
        return cast("tuple[bool, list[Delivery]]", answer)

    def _ack_write(self, delivery: Delivery, outcome: Outcome) -> Ack:
        message = delivery.message
        now = self._clock.now()
        ttl = self._result_ttl if message.result_ttl is None else message.result_ttl
        columns: tuple[Any, ...] | None = None  # a zero TTL keeps nothing: delete
        if outcome.state is State.FAILED or ttl > 0:
            expires = None if outcome.state is State.FAILED else now + ttl
            error = error_row(stored_error(outcome))
            columns = (outcome.state.value, now, expires, outcome.payload, *error)
        return Ack(delivery.token, columns)

    def _write_together(self, writes: list[Write]) -> list[Answer]:
        """Acks and claims of this process's threads in one transaction, one commit.

        A write transaction costs a commit and a turn of the file's write
        lock, which every process shares: a busy worker pays one per batch
        rather than two per task (an ack, then the claim of the slot it
        freed). Each caller hears its answer only once that commit is done.
        Acks go in order, so of two acks of one delivery only the first counts.
        The steps of limits (``limits.py``) join in, as acks do. Every ack
        (an ``AckClaim``'s too) is written before every claim.
        """
        if len(writes) == 1:
            alone = self._write_alone(writes[0])
            if alone is not None:
                return [alone]
        with self._database.write() as db:
            # BEGIN may have waited for another process's transaction: what
            # this process's threads queued meanwhile joins this one.
            writes = writes + self._writes.more()
            answers: list[Answer] = [False] * len(writes)
            groups = _claims_by_kind(writes)
            now = self._clock.now()
            _write_acks_and_steps(db, writes, answers, now)
            if now >= self._next_prune:
                self._prune_some(db, now)
            if groups:
                dead_letter_lapsed(db, now)
            claimed = [
                (
                    until,
                    group,
                    claim_rows(
                        db, queues, sum(c.limit for _, c in group), now, until, self.registry.holder
                    ),
                )
                for (queues, lease), group in groups.items()
                for until in (now + lease,)
            ]
        # Committed: decode the rows outside the lock, and deal them out in call
        # order. Nothing here raises: a row that cannot be read is a defect.
        for until, group, rows in claimed:
            deliveries = iter([row_delivery(row, until) for row in rows])
            for index, claim in group:
                dealt = list(itertools.islice(deliveries, claim.limit))
                acked = answers[index]  # an AckClaim's ack, answered already
                answers[index] = (
                    (acked is True, dealt) if isinstance(writes[index], AckClaim) else dealt
                )
        return answers

    def _write_alone(self, write: Write) -> bool | float | None:
        """A lone write with a cheaper way than a transaction: its answer; None: it has none."""
        if isinstance(write, Ack):
            return self._ack_alone(write)
        alone = write.alone if isinstance(write, Step) else None
        if alone is not None and self._database.run(lambda db: alone(db, self._clock.now())):
            return 0.0
        return None

    def _ack_alone(self, ack: Ack) -> bool:
        """One ack, no other write waiting: one statement, its own transaction.

        Without BEGIN and COMMIT around it, a lone ack (an idle worker's, in
        a round trip) costs one call into SQLite instead of three.
        """
        now = self._clock.now()
        patient = self._database.patient  # each statement is its own transaction
        with self._lock:
            stored = patient(lambda: store_ack(self._db, ack))
            if now >= self._next_prune:
                patient(lambda: self._prune_some(self._db, now))
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
        due = now if retry_at is None else retry_at
        back = 0 if penalty else 1
        params: tuple[Any, ...]
        if error is None:  # the last error (if any) stays
            sql, params = QUERIES["nack"], (State.QUEUED.value, due, retry_at, back)
        else:
            sql = QUERIES["nack_error"]
            params = (State.RETRYING.value, due, retry_at, back, *error_row(error))
        fenced = (*params, *fence(delivery.token))
        if self._database.run(lambda db: db.execute(sql, fenced).rowcount) != 1:
            return False
        self._notify()
        return True

    def extend(self, delivery: Delivery, lease: float) -> Lease:
        until = self._clock.now() + lease
        fenced = (until, *fence(delivery.token))
        rows = self._database.run(lambda db: db.execute(QUERIES["extend"], fenced).fetchall())
        if not rows:
            return Lease.LOST
        delivery.lease_until = until
        return Lease.CANCEL if rows[0][0] else Lease.HELD

    def close(self) -> None:
        self._closed = True
        self.interrupt()
        self._database.close()

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
            version = self._database.data_version()
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
            if self._database.data_version() != version:
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

    def _next_due(self, queues: Sequence[str] | None) -> float:
        params: tuple[str, ...] = ()
        if queues is None:
            sql = QUERIES["next_due"]
        else:
            sql = QUERIES["next_due_in"].format(marks=", ".join("?" * len(queues)))
            params = tuple(queues)
        ((due,),) = self._database.read(sql, params)
        if due is None:
            return float("inf")
        # Not a number (a corrupt row): claimable now.
        return float(due) if isinstance(due, (int, float)) else 0.0

    def _prune_some(self, db: sqlite3.Connection, now: float) -> None:
        """Delete a batch of expired jobs (the lock held, in the caller's transaction)."""
        pruned = db.execute(QUERIES["prune_some"], (now, self._PRUNE_BATCH)).rowcount
        # A full batch: more are due; carry on at the next claim or ack.
        self._next_prune = now if pruned >= self._PRUNE_BATCH else now + self._PRUNE_EVERY


def _claims_by_kind(
    writes: list[Write],
) -> dict[tuple[tuple[str, ...] | None, float], list[tuple[int, Claim]]]:
    """The claims of a group commit (an ``AckClaim``'s too), by queues and lease, in call order:
    each kind is claimed with one statement."""
    groups: dict[tuple[tuple[str, ...] | None, float], list[tuple[int, Claim]]] = {}
    for index, write in enumerate(writes):
        claim = write.claim if isinstance(write, AckClaim) else write
        if isinstance(claim, Claim):
            groups.setdefault((claim.queues, claim.lease), []).append((index, claim))
    return groups


def _write_acks_and_steps(
    db: sqlite3.Connection,
    writes: list[Write],
    answers: list[Answer],
    now: float,
) -> None:
    """The acks and limit steps of a group commit, in call order, their answers in place."""
    for index, write in enumerate(writes):
        if isinstance(write, Ack):
            answers[index] = store_ack(db, write)
        elif isinstance(write, AckClaim):
            answers[index] = store_ack(db, write.ack)
        elif isinstance(write, Step):
            answers[index] = write.run(db, now)


def _maybe_one_writes_fault(error: Exception) -> bool:
    """Whether a failed group commit may be one write's fault: not the database's state.

    An OperationalError (locked, busy, disk full, read-only) would fail every
    write alone as well, each after its own wait.
    """
    return not isinstance(error, sqlite3.OperationalError)
