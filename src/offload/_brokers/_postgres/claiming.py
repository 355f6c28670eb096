"""The PostgreSQL broker's acks and claims as statements, and both in one round trip.

``ack_and_claim`` (the ``AckAndClaim`` capability): a worker whose slots are
all taken frees one with every finished call, and claims its successor
with the ack. The acks and claims of the threads that meet are sent as one
pipeline (psycopg's pipeline mode): the ack statement, then the claim
statements, then one Sync. The server runs what comes before a Sync as one
implicit transaction, so the acks and the claims commit together or not at
all, after a single network round trip. Where libpq has no pipeline mode,
the statements go one by one, each committed: an ack may then be stored
without the claim after it, never the other way round.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ..._clock import Clock
from ..._errors import BrokerUnavailable
from ..._message import Delivery, Outcome, State
from .._base import stored_error
from .._group_commit import Batcher
from .link import Connection, Link
from .queries import claim_params, claim_statement
from .values import error_columns, row_delivery

ClaimCall = tuple[tuple[str, ...] | None, int, float]
"""A claim as the batchers hold it: queues (None: all), limit, lease."""
AckRow = tuple[Any, ...]
"""An ack as the batchers hold it, in the order of the ack statements' columns (``ACK_FIELDS``)."""
Rows = list[tuple[Any, ...]]

ACK_FIELDS = (
    *("id", "token", "state", "now", "expires", "result"),
    *("etype", "emsg", "etb", "eargs", "drop"),
)
_PRIORITY = 6  # where a claimed row holds its priority (seq, due, token, id, task, queue, ...)


def ack_row(delivery: Delivery, outcome: Outcome, now: float, result_ttl: float) -> AckRow:
    """What an ack stores: the outcome's columns, fenced by the delivery's id and token."""
    message = delivery.message
    ttl = result_ttl if message.result_ttl is None else message.result_ttl
    failed = outcome.state is State.FAILED
    return (
        message.id,
        delivery.token,
        outcome.state.value,
        now,
        None if failed else now + ttl,
        outcome.payload,
        *error_columns(stored_error(outcome)),
        not failed and ttl <= 0,  # a zero TTL keeps nothing: delete
    )


def send_acks(
    connection: Connection, sql: dict[str, str], acks: list[AckRow]
) -> Callable[[], set[tuple[str, int, int]]]:
    """Send ``acks`` as one statement; a function that reads (id, token, index) of each
    that counted (in a pipeline: once it is synced).

    The same delivery twice: only the first counts, as for two acks in turn.
    """
    first: dict[tuple[str, int], int] = {}
    for index, ack in enumerate(acks):
        first.setdefault((ack[0], ack[1]), index)
    unique = [acks[index] for index in first.values()]
    params: Any
    if len(unique) == 1:
        statement = sql["ack_delete" if unique[0][-1] else "ack"]
        params = dict(zip(ACK_FIELDS, unique[0], strict=True))
    else:
        statement, params = sql["ack_many"], ack_arrays(unique)
    cursor = connection.cursor(row_factory=tuple_row)
    cursor.execute(statement, params)

    def counted() -> set[tuple[str, int, int]]:
        done = {(row[0], row[1]) for row in cursor.fetchall()}
        return {(*key, first[key]) for key in done}  # only its first ack counts

    return counted


def ack_arrays(acks: list[AckRow]) -> list[str]:
    """``acks`` as the ``ack_many`` statement's arrays, one per column: array literals.

    Made here rather than by psycopg's list dumpers, which cost ~180 us a
    batch of 8 acks (a regular expression or two per element, in Python):
    ~20 us a job, a sixth of a worker's time in a drain of no-op tasks.
    Every text is quoted and escaped (backslash and double quote: the only
    characters special inside a quoted element); a bytea goes as its hex
    form, a float as its repr (``inf`` and ``nan`` included: float8 reads
    both, and the repr to the last bit).
    """
    ids, tokens, states, finished, expires, results, etypes, emsgs, etbs, eargs, drops = zip(
        *acks, strict=True
    )
    return [
        _texts(ids),
        _literal(str(int(token)) for token in tokens),
        _texts(states),
        _literal(repr(float(at)) for at in finished),
        _literal("NULL" if at is None else repr(float(at)) for at in expires),
        _literal("NULL" if data is None else f'"\\\\x{bytes(data).hex()}"' for data in results),
        *(_texts(column) for column in (etypes, emsgs, etbs, eargs)),
        _literal("t" if drop else "f" for drop in drops),
    ]


def _texts(values: Sequence[str | None]) -> str:
    return _literal(
        "NULL" if text is None else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for text in values
    )


def _literal(elements: Iterable[str]) -> str:
    return "{" + ",".join(elements) + "}"


def write_acks(
    connection: Connection, sql: dict[str, str], acks: list[AckRow]
) -> set[tuple[str, int, int]]:
    """Store ``acks`` in one statement; (id, token, index) of each that counted."""
    return send_acks(connection, sql, acks)()


def send_claim(  # noqa: PLR0917 - the claim's values, in the statement's order
    connection: Connection,
    sql: dict[str, str],
    queues: Sequence[str] | None,
    limit: int,
    now: float,
    lease: float,
    holder: str | None,
) -> Callable[[], Rows]:
    """Mark up to ``limit`` claimable jobs of ``queues`` running; a function that reads
    their rows, in claim order (in a pipeline: once it is synced).

    Queues in the order given take one statement each, each claiming what
    the ones before left: those are read at once.
    """
    params = claim_params(now, now + lease, limit, holder)
    cursor = connection.cursor(row_factory=tuple_row)
    if queues is None or len(queues) == 1:
        if queues is None:
            cursor.execute(claim_statement(sql, "claim", limit), params)
        else:
            statement = claim_statement(sql, "claim_queue", limit)
            cursor.execute(statement, {**params, "queue": queues[0]})
        # RETURNING comes in no set order
        return lambda: sorted(cursor.fetchall(), key=_claim_order)
    rows: Rows = []
    for queue in queues:  # in the order given: one index range each
        left = limit - len(rows)
        if left <= 0:
            break
        statement = claim_statement(sql, "claim_queue", left)
        found = cursor.execute(statement, {**params, "limit": left, "queue": queue})
        rows += sorted(found.fetchall(), key=_claim_order)
    return lambda: rows


RELAXED_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"
"""The first statement of a claim's transaction: it commits without waiting for the disk.

A claim is a lease, and the lease is all it writes (the job's state,
attempt, token and holder; a job out of deliveries dead-lettered, which
the next claim would do again). Only a crash of the server, or of its
machine, before the WAL writer has flushed it (0.6 s at most, at
PostgreSQL's defaults) can undo a committed claim: the job is then
claimable again and may run twice, as after a lease that lapsed (at least
once). Its token may then be handed out again too; an ack is fenced by
the job's id and token together, so it still counts only for that job,
and only if that job was claimed again with it: then whichever run acks
first records the outcome, and the other is refused. An enqueue and an outcome,
which a caller is told are stored, always wait for the disk. On the
benchmark's machine (fsync on) a one-row update committed in 250-290 µs
waiting for the disk and 135-145 µs without: a claim is on the path of
every job that a worker was idle for."""


@contextlib.contextmanager
def claim_transaction(connection: Connection) -> Iterator[None]:
    """Statements sent at once, one transaction with a relaxed commit (``RELAXED_COMMIT``),
    read after the block: for claims only, never with an ack or an enqueue.

    Where libpq has no pipeline mode, the statements go one by one, each
    committed as any other (the setting then holds for nothing else either:
    it is local to the transaction that set it).
    """
    if not psycopg.Pipeline.is_supported():
        yield
        return
    with connection.pipeline():
        connection.execute(RELAXED_COMMIT)
        yield


def _claim_order(row: tuple[Any, ...]) -> tuple[int, float, int]:
    """Priority (higher first), then due, then age: the order of the claim query."""
    return (-row[_PRIORITY], row[1], row[0])


AckClaim = tuple[AckRow, ClaimCall]
Answer = tuple[bool, list[Delivery]]


class AckClaims:
    """``ack_and_claim`` of one broker: the calls of threads that meet share one round trip.

    ``ack`` and ``claim`` are the broker's own batched calls, used for the
    calls of a batch whose statements failed for their values (an ack the
    server refuses): each is then made alone, as ``ack`` and ``claim`` do.
    """

    def __init__(
        self,
        link: Link,
        sql: dict[str, str],
        clock: Clock,
        *,
        holder: Callable[[], str | None],
        prune: Callable[[Connection, float], None],
        ack: Callable[[AckRow], bool],
        claim: Callable[[ClaimCall], list[Delivery]],
    ) -> None:
        self._link = link
        self._sql = sql
        self._clock = clock
        self._holder = holder
        self._prune = prune
        self._ack = ack
        self._claim = claim
        # A caller whose claim found a job is back with its ack soon: the
        # next flush waits a moment for the others so sent back (Batcher).
        self._batcher: Batcher[AckClaim, Answer] = Batcher(
            lambda calls: self._together(calls, self._batcher.more),
            returns=lambda answer: bool(answer[1]),
        )
        self._pipelines = psycopg.Pipeline.is_supported()

    def submit(self, ack: AckRow, claim: ClaimCall) -> Answer:
        return self._batcher.submit((ack, claim))

    def _together(
        self, calls: list[AckClaim], more: Callable[[], list[AckClaim]] | None
    ) -> list[Answer | BaseException]:
        """Every ack, then one claim per distinct (queues, lease), dealt out in call order."""
        now = self._clock.now()
        claims: list[ClaimCall] = []

        def work(connection: Connection) -> tuple[set[tuple[str, int, int]], list[Any]]:
            nonlocal calls, more, claims
            if more is not None:  # once, even if the statements are retried
                calls, more = calls + more(), None
            claims = [claim for _, claim in calls]
            self._prune(connection, now)  # at most once a minute: before, on its own
            groups: dict[tuple[tuple[str, ...] | None, float], list[int]] = {}
            for index, (queues, _, lease) in enumerate(claims):
                groups.setdefault((queues, lease), []).append(index)
            with self._pipeline(connection):
                counted = send_acks(connection, self._sql, [ack for ack, _ in calls])
                sent = [
                    (indexes, now + lease, self._send_claim(connection, queues, limit, now, lease))
                    for (queues, lease), indexes in groups.items()
                    for limit in (sum(claims[i][1] for i in indexes),)
                ]
            return counted(), [(indexes, until, rows()) for indexes, until, rows in sent]

        try:
            done, claimed = self._link.run(work)
        except BrokerUnavailable:
            raise  # the server is gone: every call of the batch alike
        except Exception:  # noqa: BLE001 - one ack's values; nothing was stored
            return [self._alone(ack, claim) for ack, claim in calls]
        answers: list[Answer | BaseException] = [
            ((ack[0], ack[1], index) in done, []) for index, (ack, _) in enumerate(calls)
        ]
        for indexes, until, rows in claimed:
            # A row that cannot be read whole is a defect, for that job alone.
            deliveries = iter([row_delivery(row, until) for row in rows])
            for index in indexes:
                dealt = list(itertools.islice(deliveries, claims[index][1]))
                answers[index] = ((calls[index][0][0], calls[index][0][1], index) in done, dealt)
        return answers

    def _alone(self, ack: AckRow, claim: ClaimCall) -> Answer | BaseException:
        """The ack, then the claim, each made as ``ack`` and ``claim`` make them; an ack
        refused (its job then recorded failed, saying why) is this caller's error alone."""
        try:
            return self._ack(ack), self._claim(claim)
        except Exception as error:  # noqa: BLE001 - answered to this caller alone
            return error

    def _send_claim(
        self,
        connection: Connection,
        queues: tuple[str, ...] | None,
        limit: int,
        now: float,
        lease: float,
    ) -> Callable[[], Rows]:
        return send_claim(connection, self._sql, queues, limit, now, lease, self._holder())

    def _pipeline(self, connection: Connection) -> AbstractContextManager[Any]:
        """The statements sent at once, one implicit transaction until its Sync."""
        return connection.pipeline() if self._pipelines else contextlib.nullcontext()
