"""Rate and concurrency limits in PostgreSQL: rows of the namespace's schema.

A call that goes under a rate limit is one statement (``limit_take_token``,
an upsert that moves the limit on only when a token is there). Everything
else is one transaction that first locks the limit's row (``limit_lock``),
then runs the arithmetic of ``_limit_math``, so every worker on every host
sees one limit. Time is the broker's clock, as for leases and ETAs.
"""

from __future__ import annotations

from typing import Any

from ..._clock import Clock
from .. import _limit_math as math
from .link import Connection, Link


class PostgresLimits:
    """The limits of one namespace (``broker.limits``)."""

    def __init__(self, link: Link, statements: dict[str, str], clock: Clock) -> None:
        self._link = link
        self._sql = statements
        self._clock = clock

    def take_token(self, name: str, interval: float, burst: int) -> float:
        params: dict[str, Any] = {"name": name, "interval": interval, "burst": burst}

        def work(connection: Connection) -> float:
            params["now"] = now = self._clock.now()
            if connection.execute(self._sql["limit_take_token"], params).fetchone():
                return 0.0
            with connection.transaction():
                tat, turn, hold = self._lock(connection, name)
                wait, tat, turn = math.take_token(now, tat, turn, interval, burst)
                self._save(connection, name, tat, turn, hold)
            return wait

        return self._link.run(work)

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        def work(connection: Connection) -> float:
            now = self._clock.now()
            with connection.transaction():
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

        return self._link.run(work)

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        def work(connection: Connection) -> None:
            now = self._clock.now()
            with connection.transaction():
                tat, turn, hold = self._lock(connection, name)
                params = {"name": name, "holder": holder}
                row = connection.execute(self._sql["limit_slot_release"], params).fetchone()
                if row is not None and ran:
                    hold = math.new_hold(hold, row[0], now)
                    self._save(connection, name, tat, turn, hold)

        self._link.run(work)

    def _lock(self, connection: Connection, name: str) -> tuple[float, float, float]:
        row = connection.execute(self._sql["limit_lock"], {"name": name}).fetchone()
        assert row is not None  # an upsert with RETURNING always answers
        return float(row[0]), float(row[1]), float(row[2])

    def _save(
        self, connection: Connection, name: str, tat: float, turn: float, hold: float
    ) -> None:
        params = {"name": name, "tat": tat, "turn": turn, "hold": hold}
        connection.execute(self._sql["limit_save"], params)
