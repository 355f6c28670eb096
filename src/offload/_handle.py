"""``Handle[R]``: what calling a task returns.

A handle *is* a ``concurrent.futures.Future``, so the standard library's
``wait`` and ``as_completed``, ``asyncio.wrap_future`` and every tool that
takes a future accept it. On top it has an ``id``, a ``state`` that knows
about retries, ``await handle``, and it logs an exception nobody looked at
when it is garbage-collected, as asyncio does.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Callable, Generator, Iterable
from typing import Any, Protocol, TypeVar

from ._errors import ResultTimeout, TaskCancelled
from ._locks import TokenLock
from ._message import Progress, State

R = TypeVar("R")

log = logging.getLogger(__name__)

# Orders cancellations of every handle against each other (a cancel decides,
# then settles the Future). Reentrant: Future.cancel() runs done-callbacks,
# which may cancel others. "Start running" against "cancel" is ordered by
# ``_making`` below, which every pool thread takes anyway: this one is taken
# by cancellations only, so that pool threads never meet on it.
_transitions = threading.RLock()

# A Future makes a Condition (an RLock, a deque, five bound methods) and two
# lists in __init__. Most handles never need them: nobody waits before the
# call ends, and nobody adds a callback. A handle makes them on first use
# instead: a finished handle then leaves the garbage collector 2 objects to
# walk instead of 11 (with 100,000 handles alive, full collections were a
# third of the time per call). This relies on Future's fields, unchanged
# since Python 3.2; if they ever change, handles fall back to Future's own
# __init__ (checked once, here).
#
# Made under their own lock, held for a few instructions and never while taking another
# (``concurrent.futures.wait`` makes them while holding other handles'
# conditions, and ``cancel`` takes a condition under ``_transitions``). One
# lock for all handles (a lock per handle would cost more), shared by every
# pool thread: a ``TokenLock``, which cannot convoy.
_making = TokenLock()
_FUTURE_FIELDS = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_LAZY_FIELDS = set(vars(concurrent.futures.Future())) == _FUTURE_FIELDS
_PENDING, _FINISHED = "PENDING", "FINISHED"
_CANCELLED = frozenset({"CANCELLED", "CANCELLED_AND_NOTIFIED"})
_ENDED = _CANCELLED | {_FINISHED}


class _MadeOnFirstUse:
    """A Future's ``_condition``, ``_waiters`` or ``_done_callbacks``, made when first read.

    A non-data descriptor: once made, the three live in the instance's
    ``__dict__`` and shadow it. Made under ``_making``, which is also what a
    settle without them holds, so a waiter arriving as the call ends either
    sees it ended or is told.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, handle: Any, owner: type | None = None) -> Any:
        if handle is None:
            return self
        fields = handle.__dict__
        with _making:
            if "_condition" not in fields:
                fields["_condition"] = threading.Condition()
                fields["_waiters"] = []
                fields["_done_callbacks"] = []
        return fields[self._name]


class HandleSource(Protocol):
    """Where a handle of a job running elsewhere learns its state."""

    def state(self, handle: Handle[Any]) -> State: ...

    def cancel(self, handle: Handle[Any], *, running: bool = True) -> bool:
        """Cancel the handle's job; ``running=False``: only if it has not started."""
        ...

    def hurry(self) -> None:
        """Someone waits on a handle now: look for results often."""
        ...

    def wait(self, handle: Handle[Any], timeout: float | None) -> float | None:
        """A thread blocks on ``handle`` now: wait for it where the source can do so best
        (it may return before ``handle`` is done); the time left of ``timeout``."""
        ...

    def progress(self, handle: Handle[Any]) -> Progress | None:
        """What the job last reported of its progress, read where it is kept."""
        ...


class Handle(concurrent.futures.Future[R]):
    """A running (or queued, or finished) call of a task.

    >>> h = work(3)
    >>> h.result(timeout=5)
    9
    """

    # Flags as class defaults: the common path (success) writes only
    # _started, which keeps a handle about as cheap to make as a bare Future.
    _started = False
    _retrying = False
    _cancel_requested = False
    _failed = False
    _retrieved = False
    _uncommitted = False
    """Enqueued in a caller's transaction: its job may not be visible yet."""
    _source: HandleSource | None = None
    """Set when the task runs in another process: the broker is asked."""
    _reader_wake: Callable[[Handle[Any]], object] | None = None
    """Set while a thread reads a result feed for this handle (``ResultWatcher``): called
    as the call ends, by whichever thread ends it, so that a reader it was not ends its read."""
    _progress: Progress | None = None
    _interrupt: Callable[[Handle[Any]], bool] | None = None
    """Set by the runner of this process while the call runs: how to stop it."""

    if _LAZY_FIELDS:
        _condition = _MadeOnFirstUse()
        _waiters = _MadeOnFirstUse()
        _done_callbacks = _MadeOnFirstUse()
        _result: Any = None
        _exception: BaseException | None = None

    def __init__(self, id: str, task_name: str) -> None:  # noqa: A002 - the public name is id
        if _LAZY_FIELDS:
            self._state = _PENDING
        else:
            super().__init__()
        self.id = id
        self.task_name = task_name

    # -- reading ------------------------------------------------------------

    @property
    def state(self) -> State:
        """``queued``, ``running``, ``retrying``, ``succeeded``, ``failed`` or ``cancelled``."""
        if self.cancelled():
            return State.CANCELLED
        if self.done():
            return State.FAILED if self._failed else State.SUCCEEDED
        if self._source is not None:
            return self._source.state(self)
        if self._retrying:
            return State.RETRYING
        return State.RUNNING if self._started else State.QUEUED

    @property
    def progress(self) -> Progress | None:
        """What the task last reported (``offload.current().progress``); None: nothing yet.

        In this process it is in hand at once; for a job run by a worker
        elsewhere it is read from the broker (SQLite, Redis, PostgreSQL)
        each time, as it was last stored: at most a quarter of a second old.
        """
        if self._source is not None:
            return self._source.progress(self) or self._progress
        return self._progress

    def report_progress(self, progress: Progress) -> None:
        """The runner of this process tells the handle what its job reported."""
        self._progress = progress

    def done(self) -> bool:
        """``True`` once the call has ended: succeeded, failed or cancelled."""
        return self._state in _ENDED

    def cancelled(self) -> bool:
        """``True`` if the call was cancelled before it ran."""
        return self._state in _CANCELLED

    def running(self) -> bool:
        """``True`` while an attempt runs (not while queued or waiting to retry)."""
        return self._started and not self._retrying and not self.done()

    def result(self, timeout: float | None = None) -> R:
        """The task's return value, waiting up to ``timeout`` seconds.

        Raises the task's own exception if it failed (after its last
        retry), ``offload.TaskCancelled`` if it was cancelled, and
        ``offload.ResultTimeout`` if it is not done in time.
        """
        self._retrieved = True
        if self._state == _FINISHED and self._exception is None:
            return self._result  # type: ignore[no-any-return]
        if self._source is None and "_condition" not in self.__dict__:
            if not _wait_on_latch(self, timeout):
                raise self._timeout_error(timeout)
            if self._state == _FINISHED and self._exception is None:
                return self._result  # type: ignore[no-any-return]
            return _outcome(self)
        left = timeout if self._source is None else self._source.wait(self, timeout)
        if self._state == _FINISHED and self._exception is None:  # read from the feed
            return self._result  # type: ignore[no-any-return]
        try:
            return super().result(left)
        except concurrent.futures.CancelledError:
            raise self._cancelled_error() from None
        except concurrent.futures.TimeoutError:
            if self.done():  # the task's own TimeoutError (TaskTimeout is one)
                raise
            raise self._timeout_error(timeout) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception (``None`` if it succeeded), waiting up to ``timeout``."""
        self._retrieved = True
        left = timeout if self._source is None else self._source.wait(self, timeout)
        try:
            return super().exception(left)
        except concurrent.futures.CancelledError:
            raise self._cancelled_error() from None
        except concurrent.futures.TimeoutError:
            raise self._timeout_error(timeout) from None

    def wait(self, timeout: float | None = None, *, progress: bool = False) -> bool:
        """Wait up to ``timeout`` seconds for the call to end; whether it did.

        ``progress=True`` draws what the task reports (``offload.current().progress``)
        on a bar meanwhile, when stderr is a terminal. Raises nothing: read the
        outcome with ``result()``.
        """
        if self._source is not None:
            self._source.hurry()
        if progress:
            from ._progress import follow  # tqdm only for those who ask

            return follow(self, self.task_name, timeout, poll=0.25)
        concurrent.futures.wait([self], timeout=timeout)
        return self.done()

    def __await__(self) -> Generator[Any, None, R]:
        """``await handle`` waits without blocking the event loop."""
        import asyncio  # not at module level: `import offload` stays fast

        self._retrieved = True
        if self._source is not None:
            self._source.hurry()
        return asyncio.wrap_future(self).__await__()

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[R]], object]) -> None:
        """Call ``fn(handle)`` when the task finishes (at once if it has)."""
        super().add_done_callback(fn)

    def __repr__(self) -> str:
        return f"<Handle {self.task_name} {self.id} {self.state}>"

    # -- transitions ---------------------------------------------------------
    #
    # The Future stays PENDING until the call ends: offload tracks "running"
    # itself, so that a queued or retrying call can still be cancelled (a
    # Future cannot go back from RUNNING) and so that a handle in another
    # process, which never sees the call start, behaves the same.

    def cancel(self) -> bool:
        """Cancel the call; ``True`` if it is cancelled, ``False`` if it had already ended.

        A queued call, or one waiting to retry, is cancelled at once. A running
        one is stopped: an ``async def`` task is cancelled, a process-pool task
        is interrupted (then its process killed after a grace), and a thread,
        which Python cannot stop, is told (``offload.current().cancelled``) and
        its call recorded cancelled at once. A call in a worker elsewhere is
        stopped at that worker's next lease renewal, which this waits for.
        """
        if self._source is not None and not self.done():
            return self._source.cancel(self)
        interrupt = self._interrupt
        if interrupt is not None and self._started and not self._retrying and not self.done():
            return interrupt(self)  # running now (not waiting for its next attempt)
        return self.cancel_locally()

    def cancel_locally(self, *, running: bool = False) -> bool:
        """Cancel this process's view of the call (the runner or a source decided);
        ``running``: also if it started (its runner stopped it)."""
        with _transitions:
            if self.cancelled():
                return True
            with _making:  # ordered against set_running_or_notify_cancel
                if self._started and not self._retrying and not running:
                    return False
                self._cancel_requested = True
            if super().cancel():
                super().set_running_or_notify_cancel()  # wakes stdlib wait()/as_completed()
                _open_latch(self)
            return self.cancelled()

    def set_running_or_notify_cancel(self) -> bool:
        """Mark the call running; ``False`` if it was cancelled (then it must not run)."""
        with _making:
            if self._cancel_requested:
                return False
            self._started = True
            self._retrying = False
            return True

    def set_retrying(self) -> None:
        self._retrying = True

    def set_waiting(self) -> None:
        """Queued again, not yet started (``offload.Delay``): cancellable as before it ran."""
        with _making:
            self._started = False
            self._retrying = False

    def set_result(self, result: R) -> None:
        if not self._settled_quietly("_result", result):
            super().set_result(result)
            _open_latch(self)

    def set_exception(self, exception: BaseException | None) -> None:
        self._failed = True
        if not self._settled_quietly("_exception", exception):
            super().set_exception(exception)
            _open_latch(self)
        # Like asyncio: an exception that no one ever retrieved is logged once, when
        # the handle is collected, so a failing background task is never silent. A
        # finalizer for failed handles only, not ``__del__``: that would be a Python
        # call for every handle dropped. It reads the fields, never the handle itself.
        if not self._retrieved:
            weakref.finalize(self, _log_unretrieved, self.__dict__).atexit = False

    def _settled_quietly(self, field: str, value: object) -> bool:
        """Settle without the Future machinery if nothing was ever made to wait on it
        (a ``result()`` caller may wait on the latch: it is opened)."""
        if "_condition" in self.__dict__:
            return False
        with _making:
            if "_condition" in self.__dict__:  # someone began to wait meanwhile
                return False
            if self._state in _ENDED:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            setattr(self, field, value)
            self._state = _FINISHED  # last: a reader that sees it sees the value
            latch = self.__dict__.pop("_latch", None)
        _wake_waiters(self, latch)
        return True

    # -- helpers -------------------------------------------------------------

    def _describe(self) -> str:
        return f"task {self.task_name!r} (id {self.id})"

    def _cancelled_error(self) -> TaskCancelled:
        return TaskCancelled(f"{self._describe()} was cancelled before it ran")

    def _timeout_error(self, timeout: float | None) -> ResultTimeout:
        return ResultTimeout(
            f"{self._describe()} did not finish within {timeout}s; it is still "
            f"{self.state}. Wait longer, or call handle.cancel() if it is still queued."
        )


def _log_unretrieved(fields: dict[str, Any]) -> None:
    """A failed handle was collected: log its exception if nobody ever retrieved it."""
    error = fields.get("_exception")
    if error is not None and not fields.get("_retrieved") and fields.get("_state") == _FINISHED:
        log.error(
            "Exception in task %r (id %s) was never retrieved",
            fields.get("task_name"),
            fields.get("id"),
            exc_info=(type(error), error, error.__traceback__),
            extra={"task": fields.get("task_name"), "job_id": fields.get("id")},
        )


# -- waiting on a bare lock ----------------------------------------------------
#
# ``Future.result()`` waits on a Condition: about fifteen Python-level calls
# to make it, wait and notify, a third of what a call through a pool costs.
# Until something needs the Future machinery (``wait()``, ``as_completed``, a
# callback, ``await``), a thread in ``Handle.result()`` waits on a plain lock,
# the latch, held from its making until the call ends. Whoever ends the call
# pops the latch and releases it; every waiter passes it on (acquire, then
# release), so several threads may wait. Functions, not methods: a handle
# keeps its methods to what its users call.


def _wait_on_latch(handle: Handle[Any], timeout: float | None) -> bool:
    """Block until ``handle``'s call ends (``False``: ``timeout`` passed first)."""
    fields = handle.__dict__
    with _making:  # ordered against Handle._settled_quietly and _open_latch
        if handle._state in _ENDED:
            return True
        latch = fields.get("_latch")
        if latch is None:
            latch = fields["_latch"] = threading.Lock()
            latch.acquire()
    if latch.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
        latch.release()  # for the next waiter
        return True
    return handle._state in _ENDED


def _open_latch(handle: Handle[Any]) -> None:
    """The call ended through the Future machinery: wake threads waiting on the latch."""
    with _making:
        latch = handle.__dict__.pop("_latch", None)
    _wake_waiters(handle, latch)


def _wake_waiters(handle: Handle[Any], latch: threading.Lock | None) -> None:
    """After a call ended: wake the threads on its latch (taken from the handle under
    ``_making``) and a thread reading a result feed for it (``Handle._reader_wake``)."""
    if latch is not None:
        latch.release()
    wake = handle._reader_wake
    if wake is not None:
        wake(handle)


def _outcome(handle: Handle[R]) -> R:
    """The ended call's result, or its exception raised (``TaskCancelled`` if cancelled)."""
    if handle._state in _CANCELLED:
        raise handle._cancelled_error()
    error = handle._exception
    if error is not None:
        try:
            raise error
        finally:
            error = handle = None  # type: ignore[assignment]  # breaks the traceback's cycle, as Future does
    return handle._result  # type: ignore[no-any-return]


class HandleMap(Protocol):
    """Handles by job id: what the runner settles (a dict, or ``WeakHandles``)."""

    def get(self, job_id: str, /) -> Handle[Any] | None: ...

    def pop(self, job_id: str, default: None, /) -> Handle[Any] | None: ...

    def __setitem__(self, job_id: str, handle: Handle[Any], /) -> None: ...

    def values(self) -> Iterable[Handle[Any]]: ...


class WeakHandles:
    """Handles by job id, held weakly: a durable job's result lives in the broker.

    Thread-safe without a lock: every operation is one call on a plain dict,
    which the interpreter does atomically, and ``values()`` returns a
    snapshot (a WeakValueDictionary cannot be iterated while another thread
    adds to it).
    """

    def __init__(self) -> None:
        self._refs: dict[str, weakref.ref[Handle[Any]]] = {}
        self._sweep_at = 1024

    def get(self, job_id: str, /) -> Handle[Any] | None:
        ref = self._refs.get(job_id)
        return None if ref is None else ref()

    def pop(self, job_id: str, default: None, /) -> Handle[Any] | None:
        ref = self._refs.pop(job_id, None)
        return None if ref is None else ref()

    def __setitem__(self, job_id: str, handle: Handle[Any], /) -> None:
        self._refs[job_id] = weakref.ref(handle)
        if len(self._refs) >= self._sweep_at:  # drop the entries of dropped handles
            for key, ref in list(self._refs.items()):
                if ref() is None:
                    self._refs.pop(key, None)
            self._sweep_at = max(1024, 2 * len(self._refs))

    def values(self) -> list[Handle[Any]]:
        alive = (ref() for ref in list(self._refs.values()))
        return [handle for handle in alive if handle is not None]

    def __len__(self) -> int:
        return len(self._refs)


def cancel_unstarted(handle: Handle[Any]) -> bool:
    """Cancel ``handle``'s call only if it has not started, as ``concurrent.futures``'
    ``shutdown(cancel_futures=True)`` does (``shutdown(cancel_pending=True)``): a running
    call runs on. Whether it is cancelled."""
    source = handle._source
    if source is not None and not handle.done():
        return source.cancel(handle, running=False)
    return handle.cancel_locally()
