"""A worker's entry in its broker's registry, kept alive by one heartbeat thread.

The worker registers as it starts (host, pid, queues, pool, concurrency,
start time) and then beats every fifth of its lapse with the ids of the
jobs it runs: one broker write per interval, whatever the number of jobs.
Each beat also releases the jobs of any worker whose heartbeat lapsed, so
that a killed worker's jobs run again about ``lapse`` seconds after its
last beat, not at the end of their leases; a beat is made early when
another worker is about to lapse. A clean stop removes the entry.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Sequence

from ._brokers import Broker
from ._brokers._base import Registering, WorkerInfo, WorkerRegistry
from ._clock import Clock
from ._message import Delivery
from ._outage import Outage

log = logging.getLogger(__name__)

LAPSE = 10.0
"""Seconds without a heartbeat after which a worker is taken for dead (its jobs released)."""
BEATS_PER_LAPSE = 5
"""Heartbeats per lapse: a worker survives a few slow or lost ones."""
EARLY = 0.05
"""Seconds after another worker's lapse at which a beat releases its jobs."""

POOL_NAMES = {"thread": "threads", "process": "processes", "async": "asyncio"}


def new_worker_id() -> str:
    """``host:pid:random``: unique per worker start, readable in ``offload workers``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Presence:
    """One worker's registry entry and its heartbeat (``Worker`` starts and stops it)."""

    def __init__(
        self,
        registry: WorkerRegistry,
        describe: WorkerInfo,
        running: Callable[[], Sequence[Delivery]],
        clock: Clock,
        closed: threading.Event,
        *,
        lapse: float = LAPSE,
    ) -> None:
        self._registry = registry
        self._info = describe
        self._running = running
        self._clock = clock
        self._closed = closed
        self._lapse = lapse
        self._interval = lapse / BEATS_PER_LAPSE
        self._registered = False
        self._outage = Outage("worker registry", "tasks go on; the entry is refreshed later")

    @property
    def id(self) -> str:
        return self._info.id

    def register(self) -> None:
        """Register now if the broker answers (else the heartbeat thread does, later)."""
        try:
            self._registry.register(self._current(), self._lapse)
        except Exception as error:  # noqa: BLE001 - logged once; the heartbeat retries
            self._outage.failed("registering", error)
        else:
            self._registered = True

    def heartbeat(self) -> None:
        """Beat every fifth of the lapse (earlier when another worker lapses), until closed."""
        due = self._clock.now() + self._interval
        while not self._closed.is_set():
            now = self._clock.now()
            if now < due:
                self._clock.wait(self._closed, due - now)
                continue
            due = now + self._interval
            next_lapse = self._beat()
            if next_lapse is not None:
                due = min(due, next_lapse + EARLY)

    def _beat(self) -> float | None:
        try:
            if not self._registered:
                self._registry.register(self._current(), self._lapse)
                self._registered = True
            next_lapse = self._registry.heartbeat(self._current(), self._lapse)
        except Exception as error:  # noqa: BLE001 - logged once per outage
            self._outage.failed("sending its heartbeat", error)
            return None
        self._outage.recovered()
        return next_lapse

    def leave(self) -> None:
        """Remove the entry (a clean stop); a broker that does not answer lets it lapse."""
        try:
            self._registry.unregister(self._info.id)
        except Exception as error:  # noqa: BLE001 - the entry lapses by itself
            log.warning(
                "offload worker %s: could not remove its registry entry (%s: %s); "
                "it disappears by itself within %gs",
                self._info.id,
                type(error).__name__,
                error,
                self._lapse,
            )

    def _current(self) -> WorkerInfo:
        running = tuple(delivery.message.id for delivery in self._running())
        return self._info._replace(last_seen=self._clock.now(), running=running)


def presence_for(
    broker: Broker,
    *,
    queues: Sequence[str] | None,
    pool: str,
    concurrency: int,
    running: Callable[[], Sequence[Delivery]],
    clock: Clock,
    closed: threading.Event,
) -> Presence | None:
    """The registry entry of a worker on ``broker``; None if the broker keeps no registry."""
    if not isinstance(broker, Registering):
        return None
    now = clock.now()
    host = socket.gethostname()
    info = WorkerInfo(
        id=new_worker_id(),
        host=host,
        pid=os.getpid(),
        queues=tuple(queues or ()),
        pool=POOL_NAMES.get(pool, pool),
        concurrency=concurrency,
        started=now,
        last_seen=now,
        running=(),
    )
    return Presence(broker.registry, info, running, clock, closed)
