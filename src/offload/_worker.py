"""The worker: claims deliveries from a broker and hands them to executors.

One dispatcher thread claims as many messages as there is room for, one
heartbeat thread renews the leases of everything running, and the
executors (created on first use) run the calls. The same worker runs
inside the program for the in-process mode and, later, as ``offload
worker`` against a durable broker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._brokers import Broker, Waker
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError
from ._executors import AsyncExecutor, Executor, ProcessExecutor, ThreadExecutor
from ._message import Delivery
from ._runner import POOLS, Call, Runner

log = logging.getLogger("offload")


def default_thread_count() -> int:
    """``min(32, cpus + 4)``, as the standard library's ThreadPoolExecutor."""
    import os

    return min(32, (os.cpu_count() or 1) + 4)


class Worker:
    """Claims messages and runs them until stopped."""

    def __init__(
        self,
        broker: Broker,
        runner: Runner,
        *,
        sizes: dict[str, int] | None = None,
        queues: Sequence[str] | None = None,
        prefetch: int = 0,
        lease: float = 30.0,
        idle_timeout: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "offload",
    ) -> None:
        self._broker = broker
        self._runner = runner
        self._sizes = {"thread": default_thread_count(), "async": 1000, **(sizes or {})}
        self._queues = queues
        self._prefetch = prefetch
        self._lease = lease
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._name = name
        self._executors: dict[str, Executor] = {}
        self._lock = threading.Lock()
        self._active: dict[int, Delivery] = {}  # by fencing token
        self._starved = False  # the dispatcher waits for a free slot
        self._room = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        for target, suffix in ((self._dispatch_loop, "dispatcher"), (self._heartbeat, "leases")):
            thread = threading.Thread(target=target, name=f"{self._name}-{suffix}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, wait: bool = True) -> None:
        """Stop claiming; executors finish what they hold when ``wait``."""
        self._stopping.set()
        self._room.set()
        if isinstance(self._broker, Waker):
            self._broker.interrupt()
        for thread in self._threads:
            thread.join(5)
        for executor in list(self._executors.values()):
            executor.shutdown(wait)

    @property
    def running(self) -> int:
        """Deliveries handed to executors and not finished yet."""
        return len(self._active)

    # -- pools ---------------------------------------------------------------------

    def size(self, pool: str) -> int:
        _check_pool(pool)
        return self._sizes.get(pool) or _default_size(pool)

    def resize(self, pool: str, size: int) -> None:
        _check_pool(pool)
        executor = self._executors.get(pool)
        if executor is not None:
            executor.resize(size)  # validates
        elif not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(f"a pool size must be a positive integer, not {size!r}")
        self._sizes[pool] = size
        self._room.set()

    def _executor(self, pool: str) -> Executor:
        executor = self._executors.get(pool)
        if executor is None:
            with self._lock:
                executor = self._executors.get(pool)
                if executor is None:
                    executor = self._executors[pool] = _make_executor(
                        pool, self.size(pool), self._clock, self._name
                    )
        return executor

    # -- the dispatcher ------------------------------------------------------------

    def _capacity(self) -> int:
        pools = self._executors or {"thread": None}
        return sum(self.size(pool) for pool in pools) + self._prefetch - len(self._active)

    def _dispatch_loop(self) -> None:
        waker = self._broker if isinstance(self._broker, Waker) else None
        while not self._stopping.is_set():
            try:
                self._dispatch_once(waker)
            except Exception:
                log.exception("offload worker: claiming failed; retrying in 1s")
                self._clock.wait(self._stopping, 1.0)

    def _dispatch_once(self, waker: Waker | None) -> None:
        free = self._capacity()
        if free <= 0:
            self._starved = True
            if self._capacity() <= 0:  # re-check: a slot may have freed meanwhile
                self._clock.wait(self._room, self._idle_timeout)
            self._room.clear()
            self._starved = False
            return
        deliveries = self._broker.claim(self._queues, free, self._lease)
        if not deliveries:
            if waker is not None:
                waker.wait_for_messages(self._idle_timeout)
            else:
                self._clock.wait(self._stopping, self._idle_timeout)
            return
        for delivery in deliveries:
            self._dispatch(delivery)

    def _dispatch(self, delivery: Delivery) -> None:
        call = self._runner.begin(delivery)
        if call is None:
            return
        with self._lock:
            self._active[delivery.token] = delivery
        self._executor(call.spec.pool).execute(call, self._done)

    def _done(self, call: Call, result: Any, error: BaseException | None) -> None:
        try:
            self._runner.finish(call, result, error)
        finally:
            with self._lock:
                self._active.pop(call.delivery.token, None)
            if self._starved:
                self._room.set()

    # -- leases --------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Renew the leases of running messages every third of a lease."""
        while not self._clock.wait(self._stopping, self._lease / 3):
            with self._lock:
                active = list(self._active.values())
            for delivery in active:
                try:
                    self._broker.extend(delivery, self._lease)
                except Exception:
                    log.exception("offload worker: could not renew a lease")


def _check_pool(pool: str) -> None:
    if pool not in POOLS:
        raise ConfigurationError(
            f"unknown pool {pool!r}: choose one of {', '.join(repr(p) for p in POOLS)}"
        )


def _default_size(pool: str) -> int:
    import os

    return default_thread_count() if pool == "thread" else os.cpu_count() or 1


def _make_executor(pool: str, size: int, clock: Clock, name: str) -> Executor:
    makers: dict[str, Callable[[], Executor]] = {
        "thread": lambda: ThreadExecutor(size, clock=clock, name=f"{name}-thread"),
        "process": lambda: ProcessExecutor(size, name=f"{name}-process"),
        "async": lambda: AsyncExecutor(size, name=f"{name}-asyncio"),
    }
    return makers[pool]()
