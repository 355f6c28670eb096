"""Rate and concurrency limits in the SQLite file: rows, changed in write transactions.

Each step runs inside a ``BEGIN IMMEDIATE`` transaction, which takes the
file's write lock, so every process that shares the file sees one limit: a
read of the limit's row, the arithmetic of ``_limit_math``, and the write,
with no other writer in between.

A step is one more write of the broker's group commit (``Step``): the steps,
acks and claims of a process's threads that meet share one transaction, so
a busy worker's rate checks ride along with the acks and claims it writes
anyway. A rate check that meets nothing is one statement of its own
(``limit_take_token``, an upsert that moves the limit on only when a token
is there); refused, it runs again as a step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .. import _limit_math as math
from .schema import QUERIES
from .statements import Step


class SqliteLimits:
    """The limits kept in one SQLite file (``broker.limits``).

    ``write(step)``: the broker's group commit, answering the step's answer.
    """

    def __init__(self, write: Callable[[Step], float]) -> None:
        self._write = write

    def take_token(self, name: str, interval: float, burst: int) -> float:
        def run(db: sqlite3.Connection, now: float) -> float:
            if _token_goes(db, now, name, interval, burst):
                return 0.0
            tat, turn, hold = _row(db, name)
            wait, tat, turn = math.take_token(now, tat, turn, interval, burst)
            db.execute(QUERIES["limit_save"], (name, tat, turn, hold))
            return wait

        def alone(db: sqlite3.Connection, now: float) -> bool:
            return _token_goes(db, now, name, interval, burst)

        return self._write(Step(run, alone))

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        return self._write(Step(lambda db, now: _slot(db, now, name, holder, limit)))

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        self._write(Step(lambda db, now: _release(db, now, name, holder, ran)))


def _token_goes(db: sqlite3.Connection, now: float, name: str, interval: float, burst: int) -> bool:
    return bool(db.execute(QUERIES["limit_take_token"], (name, now, interval, burst)).fetchall())


def _row(db: sqlite3.Connection, name: str) -> tuple[float, float, float]:
    row = db.execute(QUERIES["limit_row"], (name,)).fetchone()
    return (0.0, 0.0, 0.0) if row is None else (float(row[0]), float(row[1]), float(row[2]))


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
