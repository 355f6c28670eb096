"""The worker: claims deliveries from a broker and hands them to executors.

One dispatcher thread claims as many messages as there are free slots; when
the pools are full, the thread that frees a slot claims the next message
itself (no thread switch per call). One heartbeat thread renews the leases
of everything running; on a durable broker, one more keeps the worker's
entry in the broker's registry (``_registry``: what ``offload workers``
lists, and how a dead worker's jobs are released without waiting for their
leases). The executors (created on first use) run the calls.
The same worker runs inside the program (the in-process mode, and
``embedded_worker=True``) and as ``offload worker`` against a durable broker,
where ``drain()`` gives SIGTERM its grace period.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._brokers import Broker, Waker
from ._brokers._claiming import WaitAndClaim
from ._cancels import Cancels
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError
from ._executors import Done, Executor, Start, ThreadExecutor, check_size
from ._joblog import job_fields
from ._leases import Leases
from ._locks import TokenLock
from ._message import Delivery, Message
from ._outage import Outage
from ._registry import Presence, presence_for
from ._relay import Relay
from ._runner import POOLS, Call, Refill, Runner
from ._scheduler import Scheduler

log = logging.getLogger(__name__)

StoreAndClaim = Callable[[Message, Sequence[str] | None, int, float], list[Delivery]]
"""Stores a message and claims (queues, limit, lease) under one lock: ``claim_here``."""


def default_thread_count() -> int:
    """``min(32, cpus + 4)``, as the standard library's ThreadPoolExecutor."""
    return min(32, (os.cpu_count() or 1) + 4)


DURABLE_THREADS = 32
"""The thread pool's size in a durable app (``offload worker``) unless told otherwise.

Its calls wait on the broker's round trips, and the claims and acks of a
worker's threads go to the broker together: more threads make bigger
batches. Two workers draining no-op tasks went from 3,792 to 10,060/s on
PostgreSQL, 9,902 to 15,080/s on Redis and 6,020 to 9,967/s on SQLite
between 6 threads (``min(32, cpus + 4)`` on 2 cores) and 32 (benchmarks/README.md,
"Worker threads"). In-process apps keep ThreadPoolExecutor's default.
"""


class Worker:
    """Claims messages and runs them until stopped."""

    def __init__(
        self,
        broker: Broker,
        runner: Runner,
        *,
        sizes: dict[str, int] | None = None,
        queues: Sequence[str] | None = None,
        default_pool: str = "thread",
        lease: float | None = 30.0,
        idle_timeout: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "offload",
        scheduler: Scheduler | None = None,
    ) -> None:
        self._broker = broker
        self.scheduler = scheduler  # periodic ticks: a thread of this worker's
        self._runner = runner
        self._sizes = {"thread": default_thread_count(), "async": 1000, **(sizes or {})}
        self._queues = queues
        check_pool(default_pool)
        self._default_pool = default_pool
        # No lease (None): the broker lives in this process, so only a jump of
        # the clock could make one lapse, and that must not run a call twice.
        self._lease = math.inf if lease is None else lease
        self._idle_timeout = idle_timeout
        self._clock, self._name = clock, name
        self._executors: dict[str, Executor] = {}
        self._lock = threading.Lock()
        # A slot is taken (a marker in ``_busy``, under ``_slots``) before its claim:
        # leases held never exceed slots (bounding reruns after a crash). Passing a
        # slot on or freeing it is one list operation: no lock.
        self._slots = TokenLock()
        self._busy: list[None] = []  # one per slot reserved for a claim or running
        self._update_capacity()  # self._capacity: slots of all pools
        self._starved = False
        self._room = threading.Event()
        self._stopping = threading.Event()  # no more claims
        self._claims_stopped = False  # _stopping.is_set() for every call's path: no call
        self._closed = threading.Event()  # no more lease renewals either
        self._shut_down = threading.Event()  # middleware told (once)
        self._threads: list[threading.Thread] = []
        self._outage = Outage()
        self._leases = Leases(broker, self._lease, clock, self._outage, self._closed)
        executor_of = lambda call: self._executor(call.spec.pool or default_pool)  # noqa: E731
        self._cancels = Cancels(runner, executor_of, self._leases.settled)
        runner.interrupt = self._cancels.handle_cancelled  # handle.cancel() of a running call
        self._leases.on_cancel = self._cancels.requested  # its heartbeat hears cancel requests
        self._active = self._leases.active  # running deliveries, by fencing token
        self._presence: Presence | None = None  # its registry entry, once started durable
        self._relay = Relay() if isinstance(broker, WaitAndClaim) else None  # see _relay.py

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        if self._runner.chain is not None:
            self._runner.chain.startup(self)
        loops: list[tuple[Callable[[], None], str]] = [(self._dispatch_loop, "dispatcher")]
        if self._relay is not None:
            loops.append((functools.partial(self._dispatch_loop, standby=True), "dispatcher"))
        if self._lease != math.inf:
            loops.append((self._leases.heartbeat, "leases"))
            self._presence = presence_for(
                self._broker,
                queues=self._queues,
                pool=self._default_pool,
                concurrency=self.size(self._default_pool),
                running=lambda: list(self._active.values()),
                clock=self._clock,
                closed=self._closed,
            )
        if self._presence is not None:
            self._presence.register()  # before the first claim: its jobs are held by it
            loops.append((self._presence.heartbeat, "registry"))
        for target, suffix in loops:
            thread = threading.Thread(target=target, name=f"{self._name}-{suffix}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.scheduler is not None:
            self.scheduler.start()

    def stop(self, wait: bool = True) -> None:
        """Stop claiming; executors finish what they hold when ``wait``."""
        self._stop_claiming()
        self._closed.set()
        running = list(self._relay.running.values()) if self._relay is not None else []
        for thread in self._threads:
            if wait or thread not in running:  # else running a job: left, as a pool thread
                thread.join(5)
        for executor in list(self._executors.values()):
            executor.shutdown(wait)
        presence, self._presence = self._presence, None
        if presence is not None:
            presence.leave()
        if self._runner.chain is not None and not self._shut_down.is_set():
            self._shut_down.set()
            self._runner.chain.shutdown(self)

    def drain(self, grace: float) -> int:
        """Stop claiming, let running calls finish for ``grace`` seconds, release the rest.

        Released messages go back to the broker as if never claimed (no
        attempt counted), for another worker. Returns how many were released.
        Leases are renewed until the end, so nothing lapses meanwhile.
        """
        self._stop_claiming()
        deadline = self._clock.now() + grace
        dispatchers = 2 if self._relay is not None else 1
        end = time.monotonic() + max(1.0, grace)
        for thread in self._threads[:dispatchers]:  # its last claim is handed over
            thread.join(max(0.0, end - time.monotonic()))
        # Reserved slots too: a refill claimed with an ack is handed over (or released)
        # by its thread, after its call left ``_active``.
        while self._busy and self._clock.now() < deadline:
            self._clock.wait(self._closed, min(0.05, max(0.0, deadline - self._clock.now())))
        released = sum(self._leases.release(delivery) for delivery in list(self._active.values()))
        self.stop(wait=False)
        return released

    def _stop_claiming(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()  # no more ticks from a worker that stops
        self._claims_stopped = True
        self._stopping.set()
        self._room.set()
        if self._relay is not None:
            self._relay.stop()
        if isinstance(self._broker, Waker):
            self._broker.interrupt()

    @property
    def running(self) -> int:
        """Deliveries handed to executors and not finished yet."""
        return len(self._active)

    # -- pools ---------------------------------------------------------------------

    def size(self, pool: str) -> int:
        check_pool(pool)
        return self._sizes.get(pool) or default_size(pool)

    def resize(self, pool: str, size: int) -> None:
        check_pool(pool)
        check_size(size)
        executor = self._executors.get(pool)
        if executor is not None:
            executor.resize(size)
        self._sizes[pool] = size
        self._update_capacity()
        self._room.set()

    def _executor(self, pool: str) -> Executor:
        executor = self._executors.get(pool)
        if executor is None:
            with self._lock:
                executor = self._executors.get(pool)
                if executor is None:
                    executor = self._executors[pool] = make_executor(
                        pool,
                        self.size(pool),
                        self._start,
                        self._done,
                        clock=self._clock,
                        name=self._name,
                    )
                    self._update_capacity()
        return executor

    # -- the dispatcher ------------------------------------------------------------

    def _update_capacity(self) -> None:
        pools: Iterable[str] = self._executors or (self._default_pool,)
        self._capacity = sum(self.size(pool) for pool in pools)

    def _room_to_claim(self) -> int:
        """Free slots: how many messages to claim now."""
        return self._capacity - len(self._busy)

    def _claim(
        self, wanted: int, waiting: WaitAndClaim | None = None
    ) -> tuple[list[Delivery], bool]:
        """Claim up to ``wanted`` messages for slots reserved first (after a wait for
        messages, if ``waiting``); each delivery keeps its slot reserved until
        ``_dispatch`` takes it. And whether the broker had fewer than it was asked
        for (none were left)."""
        with self._slots:
            reserved = min(wanted, self._room_to_claim())
            if reserved <= 0:
                return [], False
            self._busy.extend([None] * reserved)
        deliveries: list[Delivery] = []
        try:
            if waiting is None:
                deliveries = self._broker.claim(self._queues, reserved, self._lease)
            else:
                deliveries = waiting.wait_and_claim(
                    self._idle_timeout, self._queues, reserved, self._lease
                )
        finally:
            self._unreserve(reserved - len(deliveries))
        return deliveries, len(deliveries) < reserved

    def _unreserve(self, slots: int) -> None:
        if slots > 0:  # (a negative slice would free all but a few)
            del self._busy[:slots]  # one operation: no lock (freeing cannot overbook)

    def _dispatch_loop(self, standby: bool = False) -> None:
        """Claim and dispatch until stopped; with a relay, the role may pass to the other
        thread as a job is run here, and come back once it is done. ``standby``: the
        relay's second thread, which waits for the role first."""
        if standby and self._relay is not None and not self._relay.stand_by():
            return
        waker = self._broker if isinstance(self._broker, Waker) else None
        waiting = self._broker if isinstance(self._broker, WaitAndClaim) else None
        pause = 0.1
        while not self._stopping.is_set():
            try:
                ran_here = self._dispatch_once(waker, waiting)
            except Exception as error:  # noqa: BLE001 - logged once per outage
                self._outage.failed("claiming", error)
                self._clock.wait(self._stopping, pause)
                pause = min(pause * 2, 5.0)  # reconnect with backoff
            else:
                pause = 0.1
                if ran_here and self._relay is not None and not self._relay.take_back():
                    return

    def _dispatch_once(self, waker: Waker | None, waiting: WaitAndClaim | None) -> bool:
        """One claim (or wait); True if this thread ran a job and passed its role on."""
        free = self._room_to_claim()
        if free <= 0:
            self._starved = True
            if self._room_to_claim() <= 0:  # re-check: slots may have freed meanwhile
                self._clock.wait(self._room, self._idle_timeout)
            self._room.clear()
            self._starved = False
            return False
        # With ``WaitAndClaim`` the broker claims at once if it may find
        # something, else waits and claims in one round trip: no round trip
        # between a wake-up and the job, nor a claim for nothing after one.
        deliveries, short = self._claim(free, waiting)
        self._outage.recovered()  # only a call that reached the broker says so
        if deliveries:
            self._hand_over(deliveries, self._relay)
            if self._relay is not None and self._relay.ran_here():
                return True
            # The broker had no more: wait for news now rather than ask again at
            # once, a claim that finds nothing and delays the acks of the calls
            # just handed over (a round trip's latency). A wait first looks for
            # what became due meanwhile, so nothing enqueued since is missed.
            # (A ``WaitAndClaim`` broker's next call makes that choice itself.)
            if not short or waker is None or waiting is not None:
                return False
        elif waiting is not None:
            return False  # it waited already
        if waker is not None:
            waker.wait_for_messages(self._idle_timeout, self._queues)
        else:
            self._clock.wait(self._stopping, self._idle_timeout)
        return False

    def claim_here(self, message: Message, store: StoreAndClaim) -> bool:
        """If a slot is free, store ``message``, just made by the calling thread, and
        claim for the free slots from that thread (in-process:
        ``MemoryBroker.enqueue_and_claim``); ``False``: no slot was free, nothing stored.

        If that may leave messages in the broker (every slot taken), the
        dispatcher is woken for them, as a plain enqueue would have done.
        """
        busy = self._busy
        with self._slots:  # reserved first, as ``_claim`` does (inlined: every call's path)
            free = 0 if self._claims_stopped else self._capacity - len(busy)
            if free <= 0:
                return False
            busy.extend([None] * free)
        deliveries: list[Delivery] = []
        try:
            deliveries = store(message, self._queues, free, self._lease)
        finally:
            del busy[: free - len(deliveries)]  # ``_unreserve``, inlined
        self._hand_over(deliveries)
        if len(deliveries) >= free and not self._claims_stopped and isinstance(self._broker, Waker):
            self._broker.interrupt()  # the dispatcher claims what is left
        return True

    def _dispatch(self, delivery: Delivery, relay: Relay | None = None) -> bool:
        """Hand ``delivery`` to its pool; ``False`` if there was nothing to run. With a
        ``relay``, a thread pool's job runs on this thread instead if the relay's other
        thread takes the claiming over (``relay.ran_here()`` then says so)."""
        try:
            call = self._runner.begin(delivery)
        except BaseException:
            self._unreserve(1)
            raise
        if call is None:
            self._unreserve(1)
            return False
        self._active[delivery.token] = delivery  # its reserved slot is now a running one
        self._cancels.calls[delivery.token] = call
        pool = call.spec.pool or self._default_pool
        executor = self._executors.get(pool) or self._executor(pool)  # made once: no call
        if relay is not None and isinstance(executor, ThreadExecutor) and relay.pass_on():
            executor.run_here(call)  # as a pool thread runs it: start, timeout, done
            return True
        try:
            executor.execute(call)
        except Exception as error:  # noqa: BLE001 - e.g. a process pool that cannot start
            # Reported as the call's outcome (retried or failed), never left
            # running: the heartbeat would renew its lease for good.
            self._done(call, None, error)
        return True

    def _start(self, call: Call) -> bool:
        """Executors call this as a call is about to run; ``False``: skip it."""
        if self._runner.start(call):
            return True
        self._finished(call)
        return False

    def _finished(self, call: Call, refill: Refill | None = None) -> None:
        del self._active[call.delivery.token]
        self._cancels.calls.pop(call.delivery.token, None)
        self._leases.settled.discard(call.delivery.token)
        if refill is None and (not self._starved or self._claims_stopped):
            self._busy.pop()  # its slot is free
            return
        # The dispatcher sleeps until there is room. Rather than wake it for
        # every finished call (a thread switch each), the thread that freed
        # the slot claims the next message itself, in priority order.
        if self._refill(call, refill):
            return
        if self._room_to_claim() > 0:
            self._room.set()

    def _refill(self, call: Call, refill: Refill | None) -> bool:
        """Give ``call``'s slot to one message (claimed with the ack, or now), or free it;
        whether a call runs in it. The slot passes from one call to the next without
        being freed and taken again: no lock, no other thread can take it meanwhile."""
        if refill is not None and (refill.claimed is not None or self._claims_stopped):
            claimed = refill.claimed or []
        elif self._room_to_claim() < 0 or not self._claims_inline(call):  # shrunk; or no
            claimed = []
        else:
            try:
                claimed = self._broker.claim(self._queues, 1, self._lease)
            except Exception as error:  # noqa: BLE001 - the dispatcher will retry
                self._outage.failed("claiming", error)
                claimed = []
        if not claimed:
            self._busy.pop()  # its slot is free
            return False
        return any(self._hand_over(claimed))  # its slot goes with it (freed if none ran)

    def _claims_inline(self, call: Call) -> bool:
        return self._executor(call.spec.pool or self._default_pool).claims_inline

    def _reserve_refill(self, call: Call) -> Refill | None:
        """A claim for the slot ``call`` is about to free, made with its ack (the slot
        stays taken meanwhile); None when the dispatcher is awake to claim (or the
        broker cannot do both at once)."""
        if not self._starved or self._claims_stopped or self._runner.acks_and_claims is None:
            return None
        if not self._claims_inline(call):
            return None
        return Refill(self._queues, self._lease)

    def _hand_over(self, deliveries: list[Delivery], relay: Relay | None = None) -> list[bool]:
        """Dispatch every claimed delivery; release them all if stopping began meanwhile.
        With a ``relay``, the last one may run on this thread (``_dispatch``).

        A claim can commit after ``drain()`` started (a broker round trip is
        slow): its deliveries must go back, not run unseen by the drain.
        """
        if self._claims_stopped:
            for delivery in deliveries:
                self._leases.release(delivery)
            self._unreserve(len(deliveries))
            return []
        dispatched = []
        for delivery in deliveries:
            try:
                here = relay if delivery is deliveries[-1] else None  # the last one, maybe
                dispatched.append(self._dispatch(delivery, here))
            except Exception as error:  # noqa: BLE001 - one delivery's failure is its own
                # Recording its refusal failed (the broker went away): its
                # lease lapses and it comes back. The others still run.
                self._outage.failed("dead-lettering a message", error)
                dispatched.append(False)
        return dispatched

    def _done(self, call: Call, result: Any, error: BaseException | None) -> None:
        """Executors call this once per call, from any thread; it never raises.

        If the broker is unreachable, recording the outcome is retried with
        backoff for up to a lease: past that, another worker will run the
        task again anyway (at least once).
        """
        leases = self._leases
        if leases.lost and leases.forget_if_lost(call.delivery):  # rarely any: no call
            self._finished(call)
            return
        # Its outcome is being recorded: the heartbeat leaves its lease alone, or it
        # would hear "lost" from a job acked a moment ago (until ``_finished``).
        self._leases.settled.add(call.delivery.token)
        refill = self._reserve_refill(call) if self._starved else None  # starved: rarely
        deadline = None  # set at the first failure: the common path reads no clock
        pause = 0.1
        while True:
            try:
                self._runner.finish(call, result, error, refill)
            except ConnectionError as unreachable:  # BrokerUnavailable is one
                self._outage.failed("recording an outcome", unreachable)
                if deadline is None:
                    deadline = self._clock.now() + min(self._lease, 300.0)
                if self._clock.now() >= deadline or self._closed.is_set():
                    log.error(
                        "offload worker: gave up recording the outcome of %s (id %s)",
                        call.spec.name,
                        call.delivery.message.id,
                        extra=job_fields(call.delivery),
                    )
                    break
                self._clock.wait(self._closed, pause)
                pause = min(pause * 2, 5.0)
            except Exception:
                log.exception(
                    "offload could not record the outcome of task %s (id %s)",
                    call.spec.name,
                    call.delivery.message.id,
                    extra=job_fields(call.delivery),
                )
                break
            else:
                if self._outage.since is not None:  # an outage ended: no call on the common path
                    self._outage.recovered()
                break
        self._finished(call, refill)


def make_executor(
    pool: str, size: int, start: Start, done: Done, *, clock: Clock, name: str
) -> Executor:
    """A pool of ``size`` that calls ``start`` and ``done`` as calls start and end."""
    # Imported on first use: asyncio and multiprocessing are slow to import.
    if pool == "process":
        from ._executors._process import ProcessExecutor

        return ProcessExecutor(size, start, done, name=f"{name}-{pool}")
    if pool == "async":
        from ._executors._async import AsyncExecutor

        return AsyncExecutor(size, start, done, name=f"{name}-asyncio")
    return ThreadExecutor(size, start, done, clock=clock, name=f"{name}-{pool}")


def check_pool(pool: str) -> None:
    if pool not in POOLS:
        raise ConfigurationError(
            f"unknown pool {pool!r}: choose one of {', '.join(repr(p) for p in POOLS)}"
        )


def default_size(pool: str) -> int:
    return default_thread_count() if pool == "thread" else os.cpu_count() or 1
