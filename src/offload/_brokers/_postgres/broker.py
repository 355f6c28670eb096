"""A durable broker on PostgreSQL: any number of workers on any number of hosts.

Claims take rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` in a CTE and
mark them running with one ``UPDATE ... RETURNING``: two workers never
claim the same job, and neither waits for the other's rows. A job is only
deleted (or marked finished) by the ack of its current claim, and a lease
that lapses makes it claimable again, so a crash loses nothing; a server
restart loses nothing either (every state change is a synchronous commit).

Wake-ups use LISTEN/NOTIFY: a transaction that makes a job claimable
(enqueue, nack, retry) sends one notification per queue it touched, which
PostgreSQL delivers only if it commits; an idle worker waits on them, never
longer than until the next due time. Results come the same way (the
``ResultFeed`` capability, ``feed.py``): while a producer waits for them,
its jobs record its reply channel, and their acks notify it, outcome and
all, in the ack's own statement.

A row is data that anyone who reaches the database may have written: a
claimed row that cannot be read whole is a defect delivery, dead-lettered
alone by the runner; no value of one row makes a claim statement fail; an
ack the server refuses is stored alone (its job recorded failed, saying
why), never failing the acks it was batched with; inspection shows a
damaged record as a failed job instead of raising. The password of the
connection string never reaches an error or a log line.

Transactional enqueue (the ``Transactional`` capability):
``enqueue_in(messages, connection)`` writes with the caller's own psycopg
connection, inside the caller's transaction. The job (and its wake-up)
exists once the caller commits, and never if it rolls back.

The statements are in ``sql/queries.sql``, the migrations in
``sql/migrations/``; inspection is ``PostgresInspector`` (``inspector``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg

from ..._clock import SYSTEM_CLOCK, Clock
from ..._errors import BrokerUnavailable, ConfigurationError, MessageRejected
from ..._message import Delivery, ErrorInfo, Message, Outcome, State, name_problem
from .._base import Finished, Lease, keep_for_horizon
from .._group_commit import Batcher
from .._sql_rows import message_row
from .claiming import (
    AckClaims,
    AckRow,
    ClaimCall,
    ack_row,
    claim_transaction,
    send_claim,
    write_acks,
)
from .enqueue import Rows, Writer
from .feed import Feed
from .inspector import PostgresInspector
from .limits import PostgresLimits
from .link import Connection, Link, Listener, Secrets, connect, conninfo, describe
from .queries import render
from .schedules import PostgresSchedules
from .schema import check, schema_name
from .schema import migrate as migrate_schema
from .values import error_columns, outcome_refused, refusals, refused_for_values, row_delivery
from .workers import PostgresRegistry

__all__ = ["PostgresBroker"]


class PostgresBroker:
    """Jobs in a PostgreSQL schema, shared by every process that connects to it.

    >>> broker = PostgresBroker.from_url("postgresql://app@db.internal/app", namespace="shop")

    ``namespace`` picks the schema (``offload_{namespace}``; ``offload``
    without one): apps with different namespaces share a database and never
    see each other's jobs. ``result_ttl``: seconds a finished job is kept,
    unless its message says otherwise; failed jobs stay until purged.
    ``reuse_window``: seconds after a success during which enqueueing its
    key returns the finished job. ``migrate``: bring the schema up to date
    on first use (else ``offload migrate`` must have, and a schema behind
    this offload is refused). A call that cannot reach the server retries
    for ``retry_for`` seconds, then raises ``BrokerUnavailable``.
    """

    # Expired results are deleted inside claim or ack at most this often,
    # at most this many at a time.
    _PRUNE_EVERY = 60.0
    _PRUNE_BATCH = 1000
    # The shortest wait: a job due now that the caller's claim did not take
    # (another worker holds its row lock for a moment) must not make it spin.
    _MIN_WAIT = 0.005

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        result_ttl: float = 86400.0,
        reuse_window: float = 0.0,
        namespace: str | None = None,
        migrate: bool = True,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        retry_for: float = 10.0,
    ) -> None:
        self.schema = schema_name(namespace)
        self._clock = clock
        self._result_ttl = result_ttl
        self._migrate = migrate
        self._sql = render(self.schema)
        self._channel = self.schema  # NOTIFY channel: one per namespace
        self._where = describe(url)
        self._closing = threading.Event()
        # Nothing shows the password: not an error of the driver's, not a log line.
        secrets = Secrets(url)
        info = _conninfo(url, connect_timeout, secrets, self._where)
        open_connection = functools.partial(connect, info, statement_timeout)
        self._ready = False  # the schema was checked (and migrated): once per broker
        ready = functools.partial(_open_ready, self, open_connection)
        self._link = Link(
            ready, self._where, retry_for=retry_for, closing=self._closing, scrub=secrets.scrub
        )
        self._listener = Listener(open_connection, self._sql["listen"], secrets.scrub)
        self._feed = Feed(open_connection, secrets.scrub)  # connects on first wait_for_results
        self.registry = PostgresRegistry(self._link, self._sql, self._channel, clock)
        self._writer = Writer(self._sql, self.schema, self._channel, reuse_window)
        self._inspector = PostgresInspector(
            self._link,
            self._sql,
            schema=self.schema,
            channel=self._channel,
            clock=clock,
            result_ttl=result_ttl,
        )
        self._claimable: set[tuple[str, ...]] = set()  # queue lists checked by claim()
        self._next_prune = 0.0
        self._acks, self._claims, self._ack_claims = _batched_writes(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        result_ttl: float = 86400.0,
        reuse_window: float = 0.0,
        namespace: str | None = None,
        migrate: bool = True,
        **options: Any,
    ) -> PostgresBroker:
        """The broker of a ``postgresql://`` (or ``postgres://``) URL; nothing connects yet."""
        return cls(
            url,
            clock=clock,
            result_ttl=result_ttl,
            reuse_window=reuse_window,
            namespace=namespace,
            migrate=migrate,
            **options,
        )

    def __repr__(self) -> str:
        return f"<PostgresBroker {self._where} schema={self.schema!r}>"

    @property
    def inspector(self) -> PostgresInspector:
        """The jobs, as the CLI and ``app.job(id)`` read them; on this broker's connection."""
        return self._inspector

    @property
    def schedules(self) -> PostgresSchedules:
        """Periodic schedules' fire times (``ScheduleStore``), on this broker's connection."""
        return PostgresSchedules(self._link, self._sql)  # no state of its own

    @functools.cached_property
    def limits(self) -> PostgresLimits:
        """Rate and concurrency limits, in rows of this namespace's schema."""
        # A connection of its own: claims and acks never wait behind a limit's steps.
        return PostgresLimits(self._link.twin(), self._sql, self._clock)

    # -- the schema ------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply missing migrations now (``offload migrate``); the schema version.

        Safe to run from many processes at once: an advisory lock lets one
        migrate while the others wait, then find nothing left to do.
        """
        self._ready = True  # this call migrates: connecting must not refuse an old schema
        try:
            return self._link.run(functools.partial(migrate_schema, schema=self.schema))
        except BaseException:
            self._ready = False
            raise

    # -- the contract ----------------------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        """Store ``messages`` (all or none); their job ids. See ``Broker.enqueue``."""
        if not messages:
            return []
        now = self._clock.now()
        keep_for_horizon(messages, self._result_ttl)
        rows, ids = _batch(messages, now)
        store = functools.partial(
            self._writer.store, messages=messages, rows=rows, now=now, reply_to=self._feed.reply_to
        )
        with refusals(messages):
            return self._link.run(self._writer.retrying(store, ids))

    def enqueue_in(self, messages: Sequence[Message], connection: Any) -> list[str]:
        """``enqueue`` on ``connection``, a psycopg connection to this broker's database.

        The rows are written in the caller's transaction and this does not
        commit: the jobs exist once the caller commits, never if it rolls
        back. A connection in autocommit mode commits the batch at once.
        Keyed messages hold an advisory lock on their keys until then.
        """
        if not isinstance(connection, psycopg.Connection):
            raise ConfigurationError(
                "options(connection=...) on a PostgreSQL app takes a psycopg 3 connection "
                f"(psycopg.Connection) to its database, not {type(connection).__qualname__!r}: "
                "pass psycopg.connect(url), or SQLAlchemy's connection.connection.driver_connection"
            )
        if not messages:
            return []
        now = self._clock.now()
        keep_for_horizon(messages, self._result_ttl)
        rows, _ = _batch(messages, now)
        store = functools.partial(
            self._writer.store, messages=messages, rows=rows, now=now, reply_to=self._feed.reply_to
        )
        with refusals(messages), _elsewhere(self.schema, self._where):
            if not self._ready:
                self._link.run(lambda _: None)  # the schema must exist (and be current)
            if connection.autocommit:
                # No transaction of the caller's to join: the batch is its own.
                with connection.transaction():
                    return store(connection)
            # Joins the caller's transaction (psycopg opens one if none is
            # open): a failure here aborts it, as any failed statement would.
            return store(connection)

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0 or (queues is not None and not queues):
            return []
        names = None if queues is None else tuple(queues)
        if names is not None and names not in self._claimable:
            _check_queues(names, self._claimable)  # else the driver's error fails others' claims
        # Claims of this process's threads that meet (each freed slot claims
        # one) share one statement and one commit.
        return self._claims.submit((names, limit, lease))

    def _claim_together(
        self, claims: list[ClaimCall], more: Callable[[], list[ClaimCall]] | None = None
    ) -> list[list[Delivery]]:
        """One claim per distinct (queues, lease), its deliveries dealt out in call order.

        ``more``: the claims queued while this one waited for the connection,
        made with it (the batcher's); answers then follow ``claims``, in order.
        """
        now = self._clock.now()
        sql = self._sql

        def work(connection: Connection) -> list[tuple[list[int], float, list[Any]]]:
            nonlocal claims, more
            if more is not None:  # once, even if the statements are retried
                claims, more = claims + more(), None
            # Before the claim, not after: claimed rows are the worker's only
            # once it holds them, so nothing should delay handing them over.
            self._prune_some(connection, now)
            groups: dict[tuple[tuple[str, ...] | None, float], list[int]] = {}
            for index, (queues, _, lease) in enumerate(claims):
                groups.setdefault((queues, lease), []).append(index)
            holder = self.registry.holder
            with claim_transaction(connection):  # commits without waiting for the disk
                sent = [
                    (
                        indexes,
                        now + lease,
                        send_claim(connection, sql, queues, limit, now, lease, holder),
                    )
                    for (queues, lease), indexes in groups.items()
                    for limit in (sum(claims[i][1] for i in indexes),)
                ]
            return [(indexes, until, rows()) for indexes, until, rows in sent]

        claimed = self._link.run(work)
        answers: list[list[Delivery]] = [[] for _ in claims]
        for indexes, until, rows in claimed:
            # A row that cannot be read whole is a defect, for that job alone.
            deliveries = iter([row_delivery(row, until) for row in rows])
            for index in indexes:
                answers[index] = list(itertools.islice(deliveries, claims[index][1]))
        return answers

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        # Acks of this process's threads that meet are stored together: one
        # statement, one commit; each returns once its own ack is committed.
        return self._acks.submit(ack_row(delivery, outcome, self._clock.now(), self._result_ttl))

    def ack_and_claim(
        self,
        delivery: Delivery,
        outcome: Outcome,
        queues: Sequence[str] | None,
        limit: int,
        lease: float,
    ) -> tuple[bool, list[Delivery]]:
        """``ack`` and ``claim`` in one round trip and one transaction (``claiming.py``)."""
        ack = ack_row(delivery, outcome, self._clock.now(), self._result_ttl)
        if limit <= 0 or (queues is not None and not queues):
            return self._acks.submit(ack), []
        names = None if queues is None else tuple(queues)
        if names is not None and names not in self._claimable:
            _check_queues(names, self._claimable)
        return self._ack_claims.submit(ack, (names, limit, lease))

    def _store_acks(
        self,
        acks: list[tuple[Any, ...]],
        more: Callable[[], list[tuple[Any, ...]]] | None = None,
    ) -> list[bool | BaseException]:
        """Record acks in one statement; whether each was still current (fenced).

        The same delivery twice: only the first counts, as for two acks in turn.
        ``more``: the acks queued while this one waited for the connection,
        stored with it (the batcher's); answers then follow ``acks``, in order.
        An ack the server or the driver refuses fails the statement: the acks
        are then stored one by one, so that it fails alone (see ``_ack_alone``).
        """
        now = self._clock.now()

        def work(connection: Connection) -> set[tuple[str, int, int]]:
            nonlocal acks, more
            if more is not None:  # once, even if the statement is retried
                acks, more = acks + more(), None
            done = write_acks(connection, self._sql, acks)
            self._prune_some(connection, now)
            return done

        try:
            done = self._link.run(work)
        except BrokerUnavailable:
            raise  # the server is gone: every ack of the batch alike
        except Exception:  # noqa: BLE001 - one ack's values; nothing was stored
            return [self._ack_alone(ack) for ack in acks]  # in order: a repeat finds it done
        return [(ack[0], ack[1], index) in done for index, ack in enumerate(acks)]

    def _ack_alone(self, ack: tuple[Any, ...]) -> bool | BaseException:
        """One ack; refused for its values, the job is recorded failed saying why.

        Its caller then hears ``MessageRejected`` (its outcome was not stored
        as given): a job whose outcome cannot be stored must not run again
        and again until its deliveries are spent.
        """
        try:
            return bool(self._link.run(functools.partial(write_acks, sql=self._sql, acks=[ack])))
        except Exception as error:  # noqa: BLE001 - answered to this ack's caller alone
            refused = error
        if not refused_for_values(refused):
            return refused
        info = outcome_refused(ack[0], refused)
        failed = (*ack[:2], State.FAILED.value, ack[3], None, None, *error_columns(info), False)
        try:
            stored = self._link.run(functools.partial(write_acks, sql=self._sql, acks=[failed]))
        except Exception:  # noqa: BLE001 - the first refusal is the news
            return refused
        return MessageRejected(info.message) if stored else False

    def nack(
        self,
        delivery: Delivery,
        retry_at: float | None,
        *,
        error: ErrorInfo | None = None,
        penalty: bool = True,
    ) -> bool:
        etype, emsg, etb, eargs = error_columns(error)
        params = {
            "id": delivery.message.id,
            "token": delivery.token,
            "state": (State.QUEUED if error is None else State.RETRYING).value,
            "due": self._clock.now() if retry_at is None else retry_at,
            "eta": retry_at,
            "back": 0 if penalty else 1,
            "keep": error is None,  # without an error, the last one (if any) stays
            "etype": etype,
            "emsg": emsg,
            "etb": etb,
            "eargs": eargs,
            "channel": self._channel,
        }
        rows = self._link.run(lambda c: c.execute(self._sql["nack"], params).fetchall())
        return len(rows) == 1

    def extend(self, delivery: Delivery, lease: float) -> Lease:
        until = self._clock.now() + lease
        params = {"id": delivery.message.id, "token": delivery.token, "until": until}
        row = self._link.run(lambda c: c.execute(self._sql["extend"], params).fetchone())
        if row is None:
            return Lease.LOST
        delivery.lease_until = until
        return Lease.CANCEL if row[0] else Lease.HELD

    def close(self) -> None:
        self._closing.set()
        self._listener.close()  # wakes every waiter first
        self._feed.close()
        self._link.close()
        limits = self.__dict__.get("limits")  # made on first use (functools.cached_property)
        if limits is not None:
            limits.close()

    # -- wake-ups --------------------------------------------------------------------

    def wait_for_messages(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a message of ``queues`` may be claimable, ``interrupt()``, or ``timeout``.

        Notifications of enqueues, nacks and retries in any process wake it;
        so does the next eta or lease end (of ``queues``, all for None).
        Without a LISTEN connection (the server is down) it sleeps until the
        timeout: the caller then claims anyway (and reconnects).
        """
        if self._closing.is_set() or timeout <= 0:
            return
        mark = self._listener.mark()
        wanted = None if queues is None else set(queues)
        # A worker waits most often right after a claim that found no more, while
        # the calls it handed over run and ack, and the next enqueue wakes it soon
        # after: so it listens a moment before it looks for due jobs (a statement
        # beside those acks, on a busy machine). What comes meanwhile wakes it;
        # what came due, or committed after its claim but before it listened,
        # waits that moment at most: as long as a due job that the claim could not
        # take waits anyway (_MIN_WAIT).
        first = min(timeout, self._MIN_WAIT)
        started = time.monotonic()
        self._listener.wait(first, wanted, mark)
        if timeout <= first or time.monotonic() - started < first:
            return  # news, an interrupt, or the whole timeout
        # Listening by now (the wait connected): nothing slips in before the look.
        # It runs on the listening connection, if this thread may read it.
        wait = timeout - first
        listening, due = self._listener.look(lambda c: _next_due(c, self._sql, queues))
        if listening:
            if due is None:
                due = self._link.run(lambda c: _next_due(c, self._sql, queues))
            wait = min(wait, due - self._clock.now())
        self._listener.wait(max(wait, self._MIN_WAIT), wanted, mark)

    def interrupt(self) -> None:
        self._listener.interrupt()

    # -- results ---------------------------------------------------------------------

    def wait_for_results(self, timeout: float) -> list[Finished]:
        """Jobs enqueued here that finished, waiting up to ``timeout`` for the first.

        The first call LISTENs on this object's reply channel; from then on
        its enqueues record the channel, and their acks notify it with the
        outcome (only the job id when that is 8000 bytes or more). At most
        once: polling stays the fallback. One thread at a time may wait.
        """
        return self._feed.wait(timeout)

    def interrupt_results(self) -> None:
        """End a ``wait_for_results`` blocked in another thread at once, still listening.

        Nothing notified meanwhile is lost: the next wait reads it. (A
        blocked ``handle.result()`` takes the reading over from the result
        watcher's thread this way: see ``ResultWatcher.wait``.)
        """
        self._feed.interrupt()

    def stop_listening(self) -> None:
        """Stop listening (enqueues stop recording the channel); ends a wait at once."""
        self._feed.stop()

    # -- internals -------------------------------------------------------------------

    def _prune_some(self, connection: Connection, now: float) -> None:
        """Delete a bounded batch of expired results, at most once a minute."""
        if now < self._next_prune:
            return
        connection.execute(self._sql["unstick"], (now,))  # the jobs_untimely index: no scan
        pruned = connection.execute(self._sql["prune_some"], (now, self._PRUNE_BATCH)).rowcount
        # A full batch: more are due; carry on at the next claim or ack.
        self._next_prune = now if pruned >= self._PRUNE_BATCH else now + self._PRUNE_EVERY


def _open_ready(broker: PostgresBroker, open_connection: Callable[[], Connection]) -> Connection:
    """A new connection of ``broker``'s, its schema checked (migrated) on the first one."""
    connection = open_connection()
    if not broker._ready:
        try:
            check(connection, broker.schema, migrating=broker._migrate)
        except BaseException:
            connection.close()
            raise
        broker._ready = True
    return connection


def _batched_writes(
    broker: PostgresBroker,
) -> tuple[Batcher[AckRow, bool], Batcher[ClaimCall, list[Delivery]], AckClaims]:
    """Acks, claims, and both at once (``AckClaims``), each shared by the threads that meet."""
    acks: Batcher[AckRow, bool] = Batcher(lambda batch: broker._store_acks(batch, acks.more))
    claims: Batcher[ClaimCall, list[Delivery]] = Batcher(
        lambda batch: broker._claim_together(batch, claims.more)
    )
    both = AckClaims(
        broker._link,
        broker._sql,
        broker._clock,
        holder=lambda: broker.registry.holder,
        prune=broker._prune_some,
        ack=acks.submit,
        claim=claims.submit,
    )
    return acks, claims, both


def _next_due(
    connection: Connection, sql: Mapping[str, str], queues: Sequence[str] | None
) -> float:
    """When the next job of ``queues`` (all for None) comes due or its lease ends; inf: none."""
    statement = sql["next_due" if queues is None else "next_due_in"]
    params = () if queues is None else (list(queues),)
    row = connection.execute(statement, params).fetchone()
    return float("inf") if row is None or row[0] is None else float(row[0])


def _conninfo(url: str, connect_timeout: float, secrets: Secrets, where: str) -> str:
    """The libpq connection string of ``url``; an unreadable one refused, its password hidden."""
    try:
        return conninfo(url, connect_timeout)
    except psycopg.Error as error:
        reason = secrets.scrub_unparsed(str(error).strip())
        raise ConfigurationError(
            f"{where}: the connection string cannot be read ({reason}); "
            "write postgresql://user:password@host:5432/dbname, or key=value pairs"
        ) from None


def _batch(messages: Sequence[Message], now: float) -> tuple[Rows, list[str]]:
    """The rows and ids of a batch; refuses it (before anything is written) if it cannot be."""
    rows = [message_row(message, now) for message in messages]
    ids = [message.id for message in messages]
    if len(set(ids)) != len(ids):
        raise ValueError(f"job id {_repeated(ids)!r} appears twice in one enqueue")
    return rows, ids


@contextlib.contextmanager
def _elsewhere(schema: str, where: str) -> Iterator[None]:
    """A caller's connection to a database without the broker's schema: say so."""
    try:
        yield
    except psycopg.errors.UndefinedTable:
        raise ConfigurationError(
            f"the connection given to enqueue in has no offload schema {schema!r}: "
            f"pass a connection to the app's database ({where})"
        ) from None


def _repeated(ids: list[str]) -> str:
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return job_id
        seen.add(job_id)
    return ""


def _check_queues(names: tuple[str, ...], claimable: set[tuple[str, ...]]) -> None:
    """Refuse a queue name PostgreSQL would refuse; remember the tuples that passed."""
    for name in names:
        problem = name_problem(name, "queue")
        if problem is not None:
            raise ConfigurationError(f"cannot claim from {name!r:.80}: {problem}")
    if len(claimable) > 1000:
        claimable.clear()
    claimable.add(names)
