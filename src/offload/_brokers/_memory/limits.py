"""Rate and concurrency limits of a memory broker: its friend, under its lock.

The limits of one process (the in-process mode, or a test): what a Lua
script or a transaction does on the other brokers, the broker's lock does
here. A slot is held while its job is in the broker's lease table with its
lease not lapsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _limit_math as math

if TYPE_CHECKING:
    from .broker import MemoryBroker


class MemoryLimits:
    """The limits kept by one ``MemoryBroker`` (``broker.limits``)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._rates: dict[str, tuple[float, float]] = {}  # name -> (tat, turn)
        self._slots: dict[str, dict[str, float]] = {}  # name -> holder -> since
        self._holds: dict[str, tuple[float, float]] = {}  # name -> (average hold, turn)

    def take_token(self, name: str, interval: float, burst: int) -> float:
        broker = self._broker
        with broker._lock:
            now = broker._clock.now()
            tat, turn = self._rates.get(name, (0.0, 0.0))
            wait, tat, turn = math.take_token(now, tat, turn, interval, burst)
            self._rates[name] = (tat, turn)
            return wait

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        broker = self._broker
        with broker._lock:
            now = broker._clock.now()
            holders = self._slots.setdefault(name, {})
            for job_id in list(holders):  # finished, or its lease lapsed: the slot is free
                delivery = broker._inflight.get(job_id)
                if delivery is None or delivery.lease_until <= now:
                    del holders[job_id]
            if holder in holders or len(holders) < limit:
                holders.setdefault(holder, now)
                return 0.0
            hold, turn = self._holds.get(name, (0.0, 0.0))
            wait, turn = math.slot_wait(now, holders.values(), limit, hold, turn)
            self._holds[name] = (hold, turn)
            return wait

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        broker = self._broker
        with broker._lock:
            since = self._slots.get(name, {}).pop(holder, None)
            if since is None or not ran:
                return
            hold, turn = self._holds.get(name, (0.0, 0.0))
            self._holds[name] = (math.new_hold(hold, since, broker._clock.now()), turn)
