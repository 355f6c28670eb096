"""Rate and concurrency limits in the SQLite file: rows, changed in one write transaction.

A call that goes under a rate limit is one statement (``limit_take_token``,
an upsert that moves the limit on only when a token is there). Everything
else is one ``BEGIN IMMEDIATE`` transaction, which takes the file's write
lock, so every process that shares the file sees one limit: a read of the
limit's row, the arithmetic of ``_limit_math``, and the write, with no
other writer in between.
"""

from __future__ import annotations

from ..._clock import Clock
from .. import _limit_math as math
from .connection import Database
from .schema import QUERIES


class SqliteLimits:
    """The limits kept in one SQLite file (``broker.limits``)."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    def take_token(self, name: str, interval: float, burst: int) -> float:
        database = self._database
        with database.lock:  # the usual case, a call that goes: one statement
            now = self._clock.now()
            params = (name, now, interval, burst)
            if database.connection.execute(QUERIES["limit_take_token"], params).fetchall():
                return 0.0
        with database.write() as db:
            now = self._clock.now()
            row = db.execute(QUERIES["limit_row"], (name,)).fetchone()
            tat, turn, hold = (0.0, 0.0, 0.0) if row is None else row
            wait, tat, turn = math.take_token(now, tat, turn, interval, burst)
            db.execute(QUERIES["limit_save"], (name, tat, turn, hold))
        return wait

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        with self._database.write() as db:
            now = self._clock.now()
            live: dict[str, float] = {}
            for job_id, since, running in db.execute(QUERIES["limit_holders"], (now, name)):
                if running:
                    live[job_id] = since
                else:  # finished, or its lease lapsed: the slot is free
                    db.execute(QUERIES["limit_slot_drop"], (name, job_id))
            if holder in live or len(live) < limit:
                db.execute(QUERIES["limit_slot_add"], (name, holder, now))
                return 0.0
            row = db.execute(QUERIES["limit_row"], (name,)).fetchone()
            tat, turn, hold = (0.0, 0.0, 0.0) if row is None else row
            wait, turn = math.slot_wait(now, live.values(), limit, hold, turn)
            db.execute(QUERIES["limit_save"], (name, tat, turn, hold))
        return wait

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        with self._database.write() as db:
            now = self._clock.now()
            released = db.execute(QUERIES["limit_slot_release"], (name, holder)).fetchall()
            if not released or not ran:
                return
            row = db.execute(QUERIES["limit_row"], (name,)).fetchone()
            tat, turn, hold = (0.0, 0.0, 0.0) if row is None else row
            hold = math.new_hold(hold, released[0][0], now)
            db.execute(QUERIES["limit_save"], (name, tat, turn, hold))
