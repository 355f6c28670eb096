"""Handles whose task runs in another process: settled from the broker.

A durable app's handles are plain ``Handle`` objects; this watcher polls
the broker for the jobs of the ones still pending in this process and
settles them, so ``result()``, ``await``, callbacks and the standard
library's ``wait`` all work the same as in-process. Handles are held
weakly: dropping one costs nothing.

A broker that can tell when jobs finish (``ResultFeed``: Redis publishes
from its ack) is listened to instead: a result is in hand one hop after
the worker recorded it, with no polling at all while nothing finishes.
Polling goes on, slowly, as the fallback for what a notification missed.

If the feed's wait can be ended from another thread (``Interruptible``:
Redis), a thread blocked on ``handle.result()`` reads the feed itself
(``ResultWatcher.wait``), so the news wakes the very thread that wants it:
no hop through the watcher's thread. One thread reads at a time, and
settles every handle it reads news of; handles nobody blocks on
(``as_completed``, ``gather``, callbacks) are settled by whoever reads, the
watcher's thread again as soon as no caller does.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any

from ._brokers import Inspector
from ._brokers._base import ChangeToken, Finished, Interruptible, ProgressStore, ResultFeed
from ._errors import MessageRejected, RemoteTraceback, TaskFailed, TaskNotFound
from ._handle import Handle, WeakHandles
from ._message import ErrorInfo, JobInfo, Progress, State
from ._outage import Outage
from ._serializers import JsonSerializer, Serializer, imported_modules

log = logging.getLogger(__name__)


class ResultWatcher:
    """Settles pending handles from the broker's job records."""

    # Poll fast while results arrive, back off to this when nothing changes.
    MIN_INTERVAL = 0.001
    MAX_INTERVAL = 0.05
    HURRY_FOR = 1.0
    HURRY_INTERVAL = 0.00025  # while a caller blocks on a result
    # With a result feed: the fallback poll, and how long to keep listening
    # after the last pending handle settled (the next call is likely soon).
    FEED_POLL = 0.05
    READERS_POLL = 1.0  # the watcher's poll while callers read the feed (see _listen)
    LISTEN_FOR = 5.0
    EARLY = 10_000  # finished ids remembered for handles not watched yet
    TAKE_OVER = 0.05  # longest wait of a blocked caller for the watcher to hand the feed over
    LINGER = 0.005  # the watcher's thread reads again this long after the last caller left

    def __init__(
        self,
        broker: Inspector,
        serializer: Serializer,
        name: str,
        feed: ResultFeed | None = None,
    ) -> None:
        self._broker = broker
        self._serializer = serializer
        # Exception args are always JSON (see runner.error_info), whatever the
        # serializer; their classes are the app's, as for results.
        self._args = JsonSerializer(modules=getattr(serializer, "modules", imported_modules))
        self._name = name
        self._pending = WeakHandles()
        self._outage = Outage("producer", "handles keep waiting")
        self._last_token: object = None
        self._hurry_until = 0.0
        # Handles watched since the last poll, weakly: one dropped at once
        # (fire and forget) costs no lookup at all.
        self._fresh: collections.deque[weakref.ref[Handle[Any]]] = collections.deque()
        self._wake = threading.Event()
        self._idle = True  # asleep with nothing pending: a new handle must wake it
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._feed = feed
        # Ids the feed announced before their handle was watched (a job can
        # finish before its enqueue call returns): watch() settles those.
        self._early: dict[str, None] = {}
        # Who reads the feed: one thread at a time, holding _reading. A caller
        # blocked on a result (wait) takes it over from the watcher's thread,
        # which stands aside while any caller wants it (_callers), and LINGER
        # after the last one left (_left): a loop of round trips would else
        # wake it twice per call, to read and to stand aside again.
        self._interrupt = feed.interrupt_results if isinstance(feed, Interruptible) else None
        self._reading = threading.Lock()
        self._watcher_reads = False
        self._callers = 0
        self._left = 0.0
        # The handle the reading caller waits for, and that caller: a handle
        # settled by anyone else ends its read (``Handle._reader_wake``, a field
        # rather than a done-callback, which would make the Future's condition).
        self._read_for_handle: Handle[Any] | None = None
        self._reader = 0

    def watch(self, handle: Handle[Any]) -> None:
        """Settle ``handle`` when its job finishes."""
        handle._source = self
        self._pending[handle.id] = handle
        self._fresh.append(weakref.ref(handle))
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopped.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name=f"{self._name}-results", daemon=True
                    )
                    self._thread.start()
        if self._early and handle.id in self._early:
            try:  # its job finished before this call: the feed has spoken already
                self._settle_pending(Finished(handle.id))
            except Exception:  # noqa: BLE001 - the watcher's poll settles it instead
                log.debug("offload: could not read the result of %s yet", handle.id)
        if self._idle:  # else it polls on its own schedule: no wake-up per call
            self._wake.set()

    def stop(self) -> None:
        """Stop polling; returns once the thread has (the broker may close next)."""
        self._stopped.set()
        self._wake.set()
        if self._feed is not None:
            self._feed.stop_listening()  # ends the watcher's wait for results
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    # -- what a Handle asks its source (see Handle._source) -------------------

    def state(self, handle: Handle[Any]) -> State:
        job = self._broker.job(handle.id)
        return State.QUEUED if job is None else job.state

    def hurry(self) -> None:
        # Someone is blocked on a result: poll at the fastest pace for a while
        # instead of backing off (that is what a round trip's latency is made of).
        self._hurry_until = time.monotonic() + self.HURRY_FOR
        self._wake.set()

    def wait(self, handle: Handle[Any], timeout: float | None) -> float | None:
        """A thread blocks on ``handle``: it reads the feed itself, if it can, until
        ``handle`` is done or ``timeout``; the time left of ``timeout``.

        It returns at once (the caller then waits on the handle, as before)
        when the feed cannot be handed over, or another blocked caller reads
        it: that one settles this handle too when its news comes.
        """
        self.hurry()
        interrupt = self._interrupt
        if interrupt is None or handle.done() or self._stopped.is_set():
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._callers += 1
        try:
            if self._take_reading(interrupt):
                try:
                    self._read_for(handle, deadline)
                finally:
                    self._reading.release()
        finally:
            with self._lock:
                self._callers -= 1
                if not self._callers:
                    self._left = time.monotonic()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _take_reading(self, interrupt: Callable[[], None]) -> bool:
        """Become the one thread reading the feed; False if another caller reads it."""
        if self._reading.acquire(blocking=False):
            return True
        if not self._watcher_reads:  # another caller (or the watcher, just done)
            return self._reading.acquire(blocking=False)
        interrupt()  # the watcher's thread stands aside (it sees _callers)
        return self._reading.acquire(timeout=self.TAKE_OVER)

    def _read_for(self, handle: Handle[Any], deadline: float | None) -> None:
        """Read the feed, settling what it brings, until ``handle`` is done or ``deadline``."""
        assert self._feed is not None  # only with an interruptible feed
        self._read_for_handle, self._reader = handle, threading.get_ident()
        handle._reader_wake = self._settled_elsewhere
        try:
            self._read_until(handle, deadline)  # sees a handle settled before the line above
        finally:
            handle._reader_wake = None
            self._read_for_handle = None

    def _settled_elsewhere(self, handle: object) -> None:
        """A handle was settled: if it was by the poll, a cancel, an embedded worker or
        another thread than the one reading the feed for it, that reader stops reading now.
        Called by whoever settled it: never raises."""
        if (
            handle is self._read_for_handle
            and threading.get_ident() != self._reader
            and self._interrupt is not None
        ):
            try:
                self._interrupt()
            except Exception as error:  # noqa: BLE001 - the reader looks again within FEED_POLL
                log.debug("offload: could not end a read of the result feed: %s", error)

    def _read_until(self, handle: Handle[Any], deadline: float | None) -> None:
        """Read the feed; every ``FEED_POLL`` without news of ``handle``, look its job up
        (the news may never come: a job enqueued before the feed listened, a cut)."""
        assert self._feed is not None
        look_at = time.monotonic() + self.FEED_POLL
        while not handle.done() and not self._stopped.is_set():
            now = time.monotonic()
            if now >= look_at:
                look_at = now + self.FEED_POLL
                self._look_up(handle)
                continue
            wait = look_at - now
            if deadline is not None:
                wait = min(wait, deadline - now)
                if wait <= 0:
                    return
            try:
                self._take(self._feed.wait_for_results(wait))
            except Exception as error:  # noqa: BLE001 - the watcher's thread reads on
                log.debug("offload: a caller's read of the result feed failed: %s", error)
                return

    def _look_up(self, handle: Handle[Any]) -> None:
        """Settle ``handle`` from its job's record if the job has finished (``_poll``'s
        look, for one handle: the poll of a caller that reads the feed)."""
        try:
            state = self._broker.job_states([handle.id]).get(handle.id)
            if state is None and handle._uncommitted:
                return  # the caller's transaction has not committed (or rolled back)
            if state is None or state.finished:
                self._settle_from_record(handle)
                self._pending.pop(handle.id, None)
        except Exception as error:  # noqa: BLE001 - the watcher's poll settles it instead
            log.debug("offload: a caller's look-up of job %s failed: %s", handle.id, error)

    def progress(self, handle: Handle[Any]) -> Progress | None:
        store = self._broker
        return store.progress(handle.id) if isinstance(store, ProgressStore) else None

    CANCEL_WAIT = 15.0
    """Seconds ``cancel()`` of a running job waits for its worker to stop it: a heartbeat
    (a third of the default 30 s lease) and some."""

    def cancel(self, handle: Handle[Any], *, running: bool = True) -> bool:
        if not running:
            waiting = self._broker.job_states([handle.id]).get(handle.id)
            if waiting not in (State.QUEUED, State.RETRYING):
                return handle.cancelled()
        if self._broker.cancel(handle.id):
            job = self._broker.job(handle.id)
            if job is not None and job.state is State.RUNNING:  # asked: its worker hears it
                self.hurry()
                concurrent.futures.wait([handle], timeout=self.CANCEL_WAIT)
                return handle.cancelled()
            self.settle(handle, job)
        return handle.cancelled()

    # -- settling ------------------------------------------------------------

    def _run(self) -> None:
        if self._feed is not None:
            self._listen(self._feed)
            return
        interval = self.MIN_INTERVAL
        while not self._stopped.is_set():
            # Idle first, then look: a watch() that adds after the look sees
            # the flag and wakes us; one that adds before is seen by the look.
            self._idle = True
            if not len(self._pending):
                self._wake.wait()
                self._wake.clear()
                self._idle = False
                interval = self.MIN_INTERVAL
                continue
            self._idle = False
            started = time.perf_counter()
            try:
                settled = self._poll()
            except Exception as error:  # noqa: BLE001 - logged once per outage
                self._outage.failed("reading results", error)
                settled = 0
            else:
                self._outage.recovered()
            # Fast while results arrive, slower when none do; and never more
            # than about a third of the time polling (many pending handles).
            cost = time.perf_counter() - started
            if time.monotonic() < self._hurry_until:
                interval = self.HURRY_INTERVAL
            elif settled:
                interval = self.MIN_INTERVAL
            else:
                interval = min(self.MAX_INTERVAL, interval * 1.5)
            self._wake.wait(max(interval, 2 * cost))
            self._wake.clear()

    def _listen(self, feed: ResultFeed) -> None:
        """Settle handles as the feed announces their jobs; poll now and then as well."""
        listen_until = 0.0
        next_poll = polled = 0.0
        while not self._stopped.is_set():
            self._idle = True
            now = time.monotonic()
            if not len(self._pending):
                if now >= listen_until:
                    feed.stop_listening()
                    self._wake.wait()
                    self._wake.clear()
                    self._idle = False
                    next_poll = polled = 0.0
                    continue
            else:
                listen_until = now + self.LISTEN_FOR
            self._idle = False
            try:
                if now >= next_poll:
                    next_poll = now + self.FEED_POLL
                    # Callers that read the feed look their own handles up when news is
                    # late (``_read_until``): the poll for the rest can be rarer, and no
                    # longer holds up their news (its commands, and this process's GIL).
                    if not self._readers(now) or now - polled >= self.READERS_POLL:
                        polled = now
                        self._poll()
                self._read_feed(feed, max(0.0, next_poll - time.monotonic()))
            except Exception as error:  # noqa: BLE001 - logged once per outage
                self._outage.failed("reading results", error)
                self._stopped.wait(self.FEED_POLL)
            else:
                self._outage.recovered()
        feed.stop_listening()

    def _readers(self, now: float) -> bool:
        """Whether callers read the feed now, or did a moment ago."""
        return bool(self._callers) or now - self._left < self.LINGER

    def _read_feed(self, feed: ResultFeed, timeout: float) -> None:
        """Read the feed for up to ``timeout``, unless a blocked caller reads it, or did
        a moment ago: then stand aside for ``LINGER`` (or ``timeout``, if shorter)."""
        if self._readers(time.monotonic()):
            self._stopped.wait(min(timeout, self.LINGER))
            return
        if not self._reading.acquire(timeout=timeout):
            return
        try:
            self._watcher_reads = True  # before the look: a caller then interrupts
            if not self._callers:
                self._take(feed.wait_for_results(timeout))
        finally:
            self._watcher_reads = False
            self._reading.release()

    def _take(self, news: list[Finished]) -> None:
        """Settle the handles of what the feed announced; remember ids not watched yet."""
        for done in news:
            self._early[done.id] = None  # first, so that watch() cannot miss it
            if len(self._early) > self.EARLY:
                del self._early[next(iter(self._early))]
            self._settle_pending(done)

    def _settle_pending(self, done: Finished) -> None:
        if self._pending.get(done.id) is None:
            return
        job = None
        if done.state is None:  # only the id came: read the outcome
            job = self._broker.job(done.id)  # if this raises, the handle stays pending
        self._early.pop(done.id, None)
        handle = self._pending.pop(done.id, None)  # None: another thread settled it
        if handle is None:
            return
        if done.state is None:
            self.settle(handle, job)
        else:
            self._settle_outcome(handle, done.state, done.result, done.error)

    def _poll(self) -> int:
        fresh = []  # handles watched since the last poll (deque ops are atomic)
        while self._fresh:
            handle = self._fresh.popleft()()
            if handle is not None:
                fresh.append(handle)
        # A broker that can tell "nobody else wrote since" spares a lookup of
        # every pending job (thousands, after a map()): only new handles then,
        # whose jobs may have finished before they were watched.
        inspector = self._broker
        token = inspector.change_token() if isinstance(inspector, ChangeToken) else None
        if token is not None and token == self._last_token:
            candidates = [h for h in fresh if not h.done()]
        else:
            candidates = [h for h in self._pending.values() if not h.done()]
        self._last_token = token
        if not candidates:
            return 0
        states = self._broker.job_states([h.id for h in candidates])
        settled = 0
        for handle in candidates:
            state = states.get(handle.id)
            if state is None and handle._uncommitted:
                continue  # the caller's transaction has not committed (or rolled back)
            handle._uncommitted = False
            if state is None or state.finished:
                self._settle_from_record(handle)
                self._pending.pop(handle.id, None)
                settled += 1
        return settled

    def _settle_from_record(self, handle: Handle[Any]) -> None:
        try:
            job = self._broker.job(handle.id)
        except ConnectionError:
            raise  # an outage: every handle keeps waiting, the poll retries
        except Exception as unreadable:  # noqa: BLE001 - one corrupt record fails one handle
            _fail(
                handle,
                MessageRejected(
                    f"the broker's record of job {handle.id} could not be read "
                    f"({type(unreadable).__name__}: {unreadable}); see `offload show {handle.id}`"
                ),
            )
            return
        self.settle(handle, job)

    def settle(self, handle: Handle[Any], job: JobInfo | None) -> None:
        """Give ``handle`` the outcome recorded in ``job``."""
        if handle.done():
            return
        if job is None:
            _fail(
                handle,
                TaskNotFound(
                    f"job {handle.id} is not in the broker: its result was pruned after "
                    "its result_ttl, or it was purged, or it never existed"
                ),
            )
        else:
            self._settle_outcome(handle, job.state, job.result, job.error)

    def _settle_outcome(
        self, handle: Handle[Any], state: State, result: bytes | None, error: ErrorInfo | None
    ) -> None:
        if handle.done():
            return
        try:
            if state is State.SUCCEEDED:
                try:
                    value = None if result is None else self._serializer.decode(result)
                except Exception as undecodable:  # noqa: BLE001 - this handle fails, no other
                    handle.set_exception(undecodable)
                    return
                handle.set_result(value)
            elif state is State.CANCELLED:
                handle.cancel_locally()
            elif state is State.FAILED:
                handle.set_exception(rebuild_error(error, self._args.decode))
        except InvalidStateError:  # another thread (the poll, a caller's read) settled it first
            return


def _fail(handle: Handle[Any], error: BaseException) -> None:
    """``handle.set_exception(error)``, unless another thread settled it first."""
    with contextlib.suppress(InvalidStateError):
        handle.set_exception(error)


def rebuild_error(
    info: ErrorInfo | None, decode_args: Callable[[bytes], Any] | None = None
) -> Exception:
    """The task's own exception, rebuilt with its arguments, else ``TaskFailed``.

    Only an ``Exception`` subclass this process has imported already is
    rebuilt: an error record is data, and names no module to import nor a
    ``SystemExit`` or ``KeyboardInterrupt`` to raise in the producer.
    """
    if info is None:
        return TaskFailed("unknown", "the job failed without a recorded error", "")
    kind = _imported_exception(info.type)
    error = None if kind is None else _construct(kind, info, decode_args)
    if error is None:
        return TaskFailed(info.type, info.message, info.traceback)
    error.__cause__ = RemoteTraceback(info.traceback)
    return error


def _imported_exception(path: str) -> type[Exception] | None:
    """The ``Exception`` subclass at ``module.QualName``, if that module is imported."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:split])
        target: Any = sys.modules.get(module)
        if target is None:
            continue
        for name in parts[split:]:
            target = getattr(target, name, None)
        if (
            isinstance(target, type)
            and issubclass(target, Exception)
            and f"{target.__module__}.{target.__qualname__}" == path
        ):
            return target
        return None
    return None


def _construct(
    kind: type[Exception], info: ErrorInfo, decode_args: Callable[[bytes], Any] | None
) -> Exception | None:
    """``kind`` built as the worker built it (its args), or from its message; None if neither."""
    args: Any = None
    if info.args is not None and decode_args is not None:
        try:
            args = decode_args(info.args.encode("utf-8"))
        except Exception:  # noqa: BLE001 - unreadable args: fall back to the message
            args = None
    attempts = [tuple(args)] if type(args) is list else []
    attempts.append((info.message,))
    for arguments in attempts:
        try:
            error = kind(*arguments)
            str(error)  # a __str__ that needs what __init__ did not set fails here, not later
        except Exception:  # noqa: BLE001 - a constructor that takes other arguments
            continue
        if isinstance(error, kind):
            return error
    if attempts[0] is not attempts[-1]:
        # A constructor whose parameters differ from its args (it formats a
        # message, say): the same type with the same args, __init__ skipped,
        # so that ``except Custom:`` matches as it would in-process.
        try:
            error = kind.__new__(kind, *attempts[0])
            error.args = attempts[0]
            str(error)
        except Exception:  # noqa: BLE001 - then TaskFailed
            return None
        return error
    return None
