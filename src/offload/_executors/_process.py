"""Child processes that can be killed at a timeout and replaced.

The standard library's ProcessPoolExecutor cannot kill one child without
breaking the whole pool, so each slot here owns one child and one pipe.
Children are started with ``spawn`` (safe with threads, the same on every
platform) and find the function by its import path, so the function must
live at the top level of an importable module.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .._context import CURRENT, JobContext, fed, services_of
from .._errors import RemoteTraceback, WorkerLost
from .._message import Progress
from .._runner import Call, invoke
from ._base import CANCEL_GRACE, Done, Start, timeout_error
from ._thread import check_size

log = logging.getLogger(__name__)


class ProcessExecutor:
    """Runs calls in up to ``size`` child processes, one call per child at a time."""

    claims_inline = True

    def __init__(
        self, size: int | None, start: Start, done: Done, *, name: str = "offload-process"
    ) -> None:
        size = size if size is not None else os.cpu_count() or 1
        check_size(size)
        self._size = size
        self._start = start
        self._done = done
        self._name = name
        self._queue: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots = 0
        self._idle = 0
        self._queued = 0
        self._children: dict[int, _Child] = {}  # the child running each call, by fencing token

    @property
    def size(self) -> int:
        return self._size

    def execute(self, call: Call) -> None:
        with self._lock:
            self._queued += 1
            spawn = self._queued > self._idle and self._slots < self._size
            if spawn:
                self._slots += 1
        self._queue.put(call)
        if spawn:
            threading.Thread(target=self._slot, name=self._name, daemon=True).start()

    def interrupt(self, call: Call) -> bool:
        """Tell the child running ``call`` (SIGINT: KeyboardInterrupt where the task is);
        kill it after ``CANCEL_GRACE`` seconds if the call has not ended, as a timeout does."""
        token = call.delivery.token
        child = self._children.get(token)
        if child is None or child.process.pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.process.pid, signal.SIGINT)
        timer = threading.Timer(CANCEL_GRACE, self._kill_if_still, (token, child))
        timer.daemon = True
        timer.start()
        return True

    def _kill_if_still(self, token: int, child: _Child) -> None:
        if self._children.get(token) is child:
            log.warning(
                "offload: a cancelled task did not stop within %gs; killing its process",
                CANCEL_GRACE,
            )
            child.process.kill()  # its round trip sees the pipe close, and a new child comes

    def resize(self, size: int) -> None:
        check_size(size)
        with self._lock:
            excess = self._slots - size
            self._size = size
        for _ in range(max(0, excess)):
            self._queue.put(None)

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            self._size = 0
            slots = self._slots
        for _ in range(slots):
            self._queue.put(None)

    def _slot(self) -> None:
        """One slot: a thread here, a child process there, started on first use."""
        child: _Child | None = None
        try:
            while True:
                with self._lock:
                    if self._slots > self._size:
                        self._slots -= 1
                        return
                    self._idle += 1
                item = self._queue.get()
                with self._lock:
                    self._idle -= 1
                    if item is not None:
                        self._queued -= 1
                if item is None or not self._start(item):
                    continue
                if child is None:
                    child = _Child.start(self._name)
                child = self._run(child, item)
        finally:
            if child is not None:
                child.stop()

    def _run(self, child: _Child, call: Call) -> _Child | None:
        """Run ``call`` in ``child``; the child to use next (None: start a new one).

        The middleware's ``execute`` hooks run here, in the slot's thread,
        around the round trip; the child only gets the job context.
        """
        trip = _RoundTrip(child, call)
        token = call.delivery.token
        self._children[token] = child
        try:
            result = invoke(call, trip.run)
        except BaseException as error:  # noqa: BLE001 - reported, as Future does
            self._children.pop(token, None)
            self._done(call, None, error)
        else:
            self._children.pop(token, None)
            self._done(call, result, None)
        return trip.child


class _RoundTrip:
    """One call sent to a child and its answer; ``child`` is None once the child was killed."""

    def __init__(self, child: _Child, call: Call) -> None:
        self.child: _Child | None = child
        self.call = call

    def run(self) -> Any:
        child, call = self.child, self.call
        if child is None:
            raise RuntimeError("a round trip runs once, on a live child")
        try:
            args = fed(call.job, call.args)
            child.conn.send((call.spec.import_path, args, call.kwargs, call.job.fields()))
        except Exception as error:  # noqa: BLE001 - e.g. an argument that cannot be pickled
            raise _not_sendable(call, error) from None
        try:
            answered, ok, payload = self._answer(child, call)
        except (EOFError, OSError):
            code = child.kill()
            self.child = None
            raise WorkerLost(
                f"the process running task {call.spec.name!r} (id {call.delivery.message.id}) "
                f"died before returning (exit code {code}); a new one replaces it"
            ) from None
        if not answered:
            child.kill()
            self.child = None
            raise timeout_error(call)
        if ok:
            return payload
        exc, text = payload
        exc.__cause__ = RemoteTraceback(text)
        raise exc

    @staticmethod
    def _answer(child: _Child, call: Call) -> tuple[bool, bool, Any]:
        """Wait for the child's reply (answered, ok, payload), serving what its job asks
        meanwhile (``(None, request)`` messages: progress, steps) from the job's context here."""
        deadline = None if call.timeout is None else time.monotonic() + call.timeout
        while True:
            if deadline is not None and not child.conn.poll(max(0.0, deadline - time.monotonic())):
                return False, False, None
            ok, payload = child.conn.recv()
            if ok is not None:
                return True, ok, payload
            _serve(child.conn, call, payload)


def _serve(conn: Connection, call: Call, request: tuple[Any, ...]) -> None:
    """Do what the child's job asked, here where the broker is; answer a step's request."""
    kind, *values = request
    if kind == "progress":
        (progress,) = values
        call.job.progress(progress.done, progress.total, progress.note)
        return
    services, delivery = services_of(call.job)
    try:
        if services is None:
            answer: Any = (False, None)
        elif kind == "recorded":
            answer = services.recorded(delivery, values[0])
        else:  # "record"
            services.record(delivery, values[0], values[1])
            answer = None
        reply: tuple[bool, Any] = (True, answer)
    except Exception as error:  # noqa: BLE001 - raised in the child, in the task
        reply = (False, error)
    conn.send(reply)


class _ChildServices:
    """A child's job services: each request goes to the parent over the pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def report(self, _: object, progress: Progress) -> None:
        self._conn.send((None, ("progress", progress)))

    def recorded(self, _: object, name: str) -> tuple[bool, Any]:
        return self._ask("recorded", name)  # type: ignore[no-any-return]

    def record(self, _: object, name: str, value: Any) -> None:
        self._ask("record", name, value)

    def _ask(self, *request: Any) -> Any:
        self._conn.send((None, request))
        ok, answer = self._conn.recv()
        if not ok:
            raise answer
        return answer


def _not_sendable(call: Call, error: Exception) -> TypeError:
    return TypeError(
        f"the arguments of task {call.spec.name!r} cannot be sent to a child process "
        f"({error}); pass values that pickle (ids, strings, numbers) or use pool='thread'"
    )


class _Child:
    """One spawned child process and the parent's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @classmethod
    def start(cls, name: str) -> _Child:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_child_main, args=(child_end,), name=name, daemon=True)
        process.start()
        child_end.close()
        return cls(process, parent_end)

    def kill(self) -> int | None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()
        return self.process.exitcode

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.kill()
        self.conn.close()


# -- in the child -------------------------------------------------------------


def resolve(import_path: str) -> Any:
    """The function at ``module:qualname``; for an offload task, its plain function."""
    module_name, _, qualname = import_path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return getattr(target, "__offload_fn__", target)


def _child_main(conn: Connection) -> None:
    functions: dict[str, Any] = {}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a cancel between calls stops nothing
    while True:
        try:
            request = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if request is None:
            return
        import_path, args, kwargs, job = request
        context = JobContext(*job, services=_ChildServices(conn))
        token = CURRENT.set(context)  # offload.current() in the child too
        try:
            fn = functions.get(import_path)
            if fn is None:
                fn = functions[import_path] = resolve(import_path)
            # A cancel is a SIGINT (KeyboardInterrupt in the task); between calls it is ignored.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            reply: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - sent to the parent
            reply = (False, (error, traceback.format_exc()))
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            CURRENT.reset(token)
        _send_reply(conn, reply)


def _send_reply(conn: Connection, reply: tuple[bool, Any]) -> None:
    try:
        conn.send(reply)
    except Exception as error:  # noqa: BLE001 - the result or exception does not pickle
        what = "result" if reply[0] else "exception"
        text = reply[1][1] if not reply[0] else ""
        replacement = TypeError(f"the task's {what} cannot be sent back to the parent: {error}")
        conn.send((False, (replacement, text)))
