"""Rate and concurrency limits in the SQLite file: rows, changed in write transactions.

Each step runs inside a ``BEGIN IMMEDIATE`` transaction, which takes the
file's write lock, so every process that shares the file sees one limit: a
read of the limit's row, the arithmetic of ``_limit_math``, and the write,
with no other writer in between. A call that goes under a rate limit is one
statement (``limit_take_token``, an upsert that moves the limit on only when
a token is there).

The steps of a process's threads that meet share one transaction (group
commit, as acks and claims do): a commit and the write lock are the cost of
a step, paid per batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..._clock import Clock
from .. import _limit_math as math
from .._group_commit import Batcher
from .connection import Database
from .schema import QUERIES

Step = Callable[[sqlite3.Connection, float], float]
"""One limit step: given the connection (in the transaction) and now, its answer."""


class SqliteLimits:
    """The limits kept in one SQLite file (``broker.limits``)."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock
        self._steps: Batcher[Step, float] = Batcher(self._run)

    def take_token(self, name: str, interval: float, burst: int) -> float:
        return self._steps.submit(lambda db, now: _token(db, now, name, interval, burst))

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        return self._steps.submit(lambda db, now: _slot(db, now, name, holder, limit))

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        self._steps.submit(lambda db, now: _release(db, now, name, holder, ran))

    def _run(self, steps: list[Step]) -> list[float]:
        with self._database.write() as db:
            now = self._clock.now()
            answers = [step(db, now) for step in steps]
            answers += [step(db, now) for step in self._steps.more()]  # queued meanwhile
        return answers


def _row(db: sqlite3.Connection, name: str) -> tuple[float, float, float]:
    row = db.execute(QUERIES["limit_row"], (name,)).fetchone()
    return (0.0, 0.0, 0.0) if row is None else (float(row[0]), float(row[1]), float(row[2]))


def _token(db: sqlite3.Connection, now: float, name: str, interval: float, burst: int) -> float:
    if db.execute(QUERIES["limit_take_token"], (name, now, interval, burst)).fetchall():
        return 0.0
    tat, turn, hold = _row(db, name)
    wait, tat, turn = math.take_token(now, tat, turn, interval, burst)
    db.execute(QUERIES["limit_save"], (name, tat, turn, hold))
    return wait


def _slot(db: sqlite3.Connection, now: float, name: str, holder: str, limit: int) -> float:
    live: dict[str, float] = {}
    for job_id, since, running in db.execute(QUERIES["limit_holders"], (now, name)).fetchall():
        if running:
            live[job_id] = since
        else:  # finished, or its lease lapsed: the slot is free
            db.execute(QUERIES["limit_slot_drop"], (name, job_id))
    if holder in live or len(live) < limit:
        db.execute(QUERIES["limit_slot_add"], (name, holder, now))
        return 0.0
    tat, turn, hold = _row(db, name)
    wait, turn = math.slot_wait(now, live.values(), limit, hold, turn)
    db.execute(QUERIES["limit_save"], (name, tat, turn, hold))
    return wait


def _release(db: sqlite3.Connection, now: float, name: str, holder: str, ran: bool) -> float:
    released = db.execute(QUERIES["limit_slot_release"], (name, holder)).fetchall()
    if released and ran:
        tat, turn, hold = _row(db, name)
        hold = math.new_hold(hold, released[0][0], now)
        db.execute(QUERIES["limit_save"], (name, tat, turn, hold))
    return 0.0
