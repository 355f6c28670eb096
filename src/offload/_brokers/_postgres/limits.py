"""Rate and concurrency limits in PostgreSQL: rows of the namespace's schema.

Each step is a transaction that first locks the limit's row (``limit_lock``,
an upsert that makes it if need be), then runs the arithmetic of
``_limit_math``, so every worker on every host sees one limit. Time is the
broker's clock, as for leases and ETAs.

Limits have a connection of their own (a worker's claims and acks never
wait behind them), whose commits do not wait for the disk
(``synchronous_commit = off``): a limit is soft state, and a server crash
can at worst forget its last few milliseconds, letting that many calls more
through; the jobs themselves are written as ever. The steps of a process's
threads that meet share one transaction (group commit): the rate checks of
one limit in a batch are one lock of its row, the arithmetic in Python, and
one write, whatever their number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..._clock import Clock
from .. import _limit_math as math
from .._group_commit import Batcher
from .link import Connection, Link


class _Token(NamedTuple):
    name: str
    interval: float
    burst: int


Step = _Token | Callable[[Connection, float], float]
"""A rate check, or another step: given the connection (in the transaction) and now."""


def _done(connection: Connection, now: float) -> float:
    return 0.0  # a step answered already, in the fast path


_DONE: Step = _done


class PostgresLimits:
    """The limits of one namespace (``broker.limits``)."""

    def __init__(self, link: Link, statements: dict[str, str], clock: Clock) -> None:
        self._link = link
        self._sql = statements
        self._clock = clock
        self._steps: Batcher[Step, float] = Batcher(self._run)
        self._tuned: Connection | None = None

    def take_token(self, name: str, interval: float, burst: int) -> float:
        return self._steps.submit(_Token(name, interval, burst))

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        return self._steps.submit(lambda c, now: self._slot(c, now, name, holder, limit))

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        self._steps.submit(lambda c, now: self._release(c, now, name, holder, ran))

    def close(self) -> None:
        self._link.close()

    def _run(self, steps: list[Step]) -> list[float]:
        steps = steps + self._steps.more()  # queued while the last batch ran: this one's too

        def work(connection: Connection) -> list[float]:
            if connection is not self._tuned:  # a new connection (the first, or after a loss)
                connection.execute("SET synchronous_commit = off")
                self._tuned = connection
            now = self._clock.now()
            answers = self._fast(connection, now, steps)
            if None not in answers:
                return [a or 0.0 for a in answers]
            rest = [s if a is None else _DONE for s, a in zip(steps, answers, strict=True)]
            with connection.transaction():
                slow = self._answer(connection, now, rest)
            return [slow[i] if a is None else a for i, a in enumerate(answers)]

        return self._link.run(work)

    def _fast(self, connection: Connection, now: float, steps: list[Step]) -> list[float | None]:
        """The usual case first: a limit's only rate check in the batch, that goes, is one
        statement, no transaction. The answers known so; None for what is left."""
        answers: list[float | None] = [None] * len(steps)
        names = [step.name for step in steps if isinstance(step, _Token)]
        for place, step in enumerate(steps):
            if isinstance(step, _Token) and names.count(step.name) == 1:
                params = {"name": step.name, "now": now, "interval": step.interval}
                params["burst"] = step.burst
                if connection.execute(self._sql["limit_take_token"], params).fetchone():
                    answers[place] = 0.0
        return answers

    def _answer(self, connection: Connection, now: float, steps: list[Step]) -> list[float]:
        answers: list[float] = [0.0] * len(steps)
        checks: dict[str, list[int]] = {}  # a limit's name -> its rate checks' places
        for place, step in enumerate(steps):
            if isinstance(step, _Token):
                checks.setdefault(step.name, []).append(place)
            else:
                answers[place] = step(connection, now)
        for name in sorted(checks):  # one order in every process: no deadlock between them
            tat, turn, hold = self._lock(connection, name)
            for place in checks[name]:
                token = steps[place]
                assert isinstance(token, _Token)
                answers[place], tat, turn = math.take_token(
                    now, tat, turn, token.interval, token.burst
                )
            self._save(connection, name, tat, turn, hold)
        return answers

    def _slot(
        self, connection: Connection, now: float, name: str, holder: str, limit: int
    ) -> float:
        tat, turn, hold = self._lock(connection, name)
        params: dict[str, Any] = {"name": name, "holder": holder, "now": now}
        rows = connection.execute(self._sql["limit_holders"], params).fetchall()
        live = {job_id: since for job_id, since, running in rows if running}
        dead = [job_id for job_id, _, running in rows if not running]
        if dead:  # finished, or the lease lapsed: the slot is free
            params["holders"] = dead
            connection.execute(self._sql["limit_slots_drop"], params)
        if holder in live or len(live) < limit:
            connection.execute(self._sql["limit_slot_add"], params)
            return 0.0
        wait, turn = math.slot_wait(now, live.values(), limit, hold, turn)
        self._save(connection, name, tat, turn, hold)
        return wait

    def _release(
        self, connection: Connection, now: float, name: str, holder: str, ran: bool
    ) -> float:
        tat, turn, hold = self._lock(connection, name)
        params = {"name": name, "holder": holder}
        row = connection.execute(self._sql["limit_slot_release"], params).fetchone()
        if row is not None and ran:
            self._save(connection, name, tat, turn, math.new_hold(hold, row[0], now))
        return 0.0

    def _lock(self, connection: Connection, name: str) -> tuple[float, float, float]:
        row = connection.execute(self._sql["limit_lock"], {"name": name}).fetchone()
        assert row is not None  # an upsert with RETURNING always answers
        return float(row[0]), float(row[1]), float(row[2])

    def _save(
        self, connection: Connection, name: str, tat: float, turn: float, hold: float
    ) -> None:
        params = {"name": name, "tat": tat, "turn": turn, "hold": hold}
        connection.execute(self._sql["limit_save"], params)
