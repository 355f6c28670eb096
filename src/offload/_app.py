"""``App``: a broker, the tasks declared on it, and (in-process) its worker."""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Literal, overload

from ._brokers import Broker, MemoryBroker
from ._clock import SYSTEM_CLOCK, Clock
from ._errors import ConfigurationError
from ._executors import check_size
from ._handle import Handle
from ._message import Message, new_id
from ._retry import Backoff
from ._runner import Runner, TaskSpec
from ._task import NO_OPTIONS, CallOptions, P, R, Seconds, Task, TaskDecorator, make_spec
from ._worker import Worker, check_pool, default_size

log = logging.getLogger("offload")

OnExit = Literal["wait", "cancel"]

SUPPORTED_URLS = "memory://"


class App:
    """Where tasks run: a broker and the workers that serve it.

    ``App()`` (or ``App("memory://")``) runs tasks inside this process, on a
    worker started with the first call. Durable brokers (SQLite, Redis,
    PostgreSQL) arrive with their own URLs.

    ``on_exit`` decides what happens to unfinished tasks when the
    interpreter exits: ``"wait"`` (the default, like ``concurrent.futures``)
    or ``"cancel"`` (queued tasks are cancelled, running ones abandoned).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        threads: int | None = None,
        processes: int | None = None,
        on_exit: OnExit = "wait",
        clock: Clock = SYSTEM_CLOCK,
        name: str = "offload",
    ) -> None:
        self.url = url or "memory://"
        self.broker: Broker = _open_broker(self.url, clock)
        if on_exit not in ("wait", "cancel"):
            raise ConfigurationError(f"on_exit={on_exit!r}: choose 'wait' or 'cancel'")
        self.on_exit: OnExit = on_exit
        self.clock = clock
        self.name = name
        self._registry: dict[str, TaskSpec] = {}
        self._handles: dict[str, Handle[Any]] = {}
        self._runner = Runner(self.broker, self._registry, clock, self._handles)
        self._sizes: dict[str, int] = {}
        for pool, size in (("thread", threads), ("process", processes)):
            if size is not None:
                check_size(size)  # here, not in the worker's thread where it would hang calls
                self._sizes[pool] = size
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- declaring tasks ------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        *,
        pool: str | None = None,
        retries: int = 0,
        backoff: Backoff | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        timeout: Seconds | None = None,
        name: str | None = None,
        queue: str = "default",
    ) -> TaskDecorator: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Declare a task on this app: ``@app.task`` or ``@app.task(retries=3)``.

        The options are those of ``offload.task``.
        """
        return _declare(fn, options, lambda: self)

    # -- calling --------------------------------------------------------------------

    def submit(
        self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Handle[Any]:
        """Send one call of ``spec``; its handle (used by ``Task.__call__``)."""
        message, handle = self._prepare(spec, args, kwargs, options)
        self.broker.enqueue((message,))
        return handle

    def submit_many(
        self, spec: TaskSpec, calls: list[tuple[Any, ...]], options: CallOptions
    ) -> list[Handle[Any]]:
        """Send many calls of ``spec`` in one batch."""
        prepared = [self._prepare(spec, args, {}, options) for args in calls]
        self.broker.enqueue([message for message, _ in prepared])
        return [handle for _, handle in prepared]

    def _prepare(
        self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> tuple[Message, Handle[Any]]:
        # The hot path of every call: keep it to a few dict lookups.
        if self._worker is None:
            self._start()
        if self._registry.get(spec.name) is not spec:
            self._registry[spec.name] = spec
        message_id = new_id()
        message = Message(message_id, spec.name, args, kwargs, spec.queue)
        if options is not NO_OPTIONS:
            _apply(message, options, self.clock)
        handle: Handle[Any] = Handle(message_id, spec.name)
        self._handles[message_id] = handle
        return message, handle

    # -- pools ----------------------------------------------------------------------

    def pool_size(self, pool: str = "thread") -> int:
        """How many calls of ``pool`` ("thread", "process", "async") run at once."""
        check_pool(pool)
        worker = self._worker
        if worker is not None:
            return worker.size(pool)
        return self._sizes.get(pool) or default_size(pool)

    def resize(self, pool: str, size: int) -> None:
        """Change a pool's size, even while it runs: ``app.resize("thread", 110)``."""
        check_pool(pool)
        check_size(size)
        with self._lock:
            self._sizes[pool] = size
            worker = self._worker
        if worker is not None:
            worker.resize(pool, size)

    # -- life cycle -----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Calls of this app that have not finished yet."""
        return len(self._handles)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every call made so far has finished; ``False`` on timeout."""
        handles = list(self._handles.values())
        _, not_done = concurrent.futures.wait(handles, timeout)
        return not not_done

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stop the app's worker.

        With ``wait``, first wait for every unfinished call; with
        ``cancel_pending``, cancel the calls that have not started instead.
        """
        if cancel_pending:
            self._cancel_pending()
        if wait:
            self.join()
        with self._lock:
            worker, self._worker = self._worker, None
            self._closed = True
        if worker is not None:
            worker.stop(wait)
        self.broker.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<offload.App {self.url} tasks={len(self._registry)} pending={self.pending}>"

    # -- internals ------------------------------------------------------------------

    def _ensure_worker(self) -> Worker:
        return self._worker or self._start()

    def _start(self) -> Worker:
        with self._lock:
            if self._closed:
                raise ConfigurationError(f"{self!r} was shut down; create a new App")
            if self._worker is None:
                worker = Worker(
                    self.broker,
                    self._runner,
                    sizes=dict(self._sizes),
                    lease=None if isinstance(self.broker, MemoryBroker) else 30.0,
                    clock=self.clock,
                    name=self.name,
                )
                worker.start()
                atexit.register(self._at_exit)
                self._worker = worker
            return self._worker

    def _cancel_pending(self) -> int:
        cancelled = 0
        for handle in list(self._handles.values()):
            if handle.cancel():
                cancelled += 1
        return cancelled

    def _at_exit(self) -> None:
        if self._closed:
            return
        if self.on_exit == "cancel":
            cancelled = self._cancel_pending()
            if cancelled:
                log.info("offload: cancelled %d unfinished tasks at exit", cancelled)
            return
        try:
            if self.pending:
                log.info(
                    "offload: waiting for %d tasks to finish (Ctrl-C to abandon)", self.pending
                )
            while not self.join(timeout=0.1):
                pass
        except KeyboardInterrupt:
            left = self.pending
            self._cancel_pending()
            log.warning("offload: interrupted at exit; %d unfinished tasks abandoned", left)


def _apply(message: Message, options: CallOptions, clock: Clock) -> None:
    if options.delay is not None:
        message.eta = clock.now() + options.delay
    if options.eta is not None:
        message.eta = options.eta
    if options.priority is not None:
        message.priority = options.priority
    if options.queue is not None:
        message.queue = options.queue
    message.timeout = options.timeout
    message.retries = options.retries


def _open_broker(url: str, clock: Clock) -> Broker:
    scheme, separator, _ = url.partition("://")
    if not separator:
        raise ConfigurationError(f"{url!r} is not a broker URL; supported: {SUPPORTED_URLS}")
    if scheme == "memory":
        return MemoryBroker(clock)
    raise ConfigurationError(
        f"unknown broker scheme {scheme!r} in {url!r}; supported: {SUPPORTED_URLS}"
    )


def _declare(fn: Callable[..., Any] | None, options: dict[str, Any], app: Callable[[], Any]) -> Any:
    """``@task`` and ``@task(...)``, for both ``App.task`` and ``offload.task``."""
    defaults: dict[str, Any] = {
        "pool": None,
        "retries": 0,
        "backoff": None,
        "retry_on": Exception,
        "timeout": None,
        "name": None,
        "queue": "default",
    }
    unknown = set(options) - set(defaults)
    if unknown:
        raise ConfigurationError(
            f"unknown task option(s) {', '.join(sorted(unknown))}; "
            f"the options are {', '.join(defaults)}"
        )
    settings = {**defaults, **options}

    def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
        return Task(function, make_spec(function, **settings), app)

    return decorate if fn is None else decorate(fn)


# -- the default app ----------------------------------------------------------------

_default: App | None = None
_default_lock = threading.Lock()


def default_app() -> App:
    """The app ``@offload.task`` uses: in-process, created on first use."""
    global _default  # noqa: PLW0603 - one lazily created default, as logging's root logger
    app = _default
    if app is None:
        with _default_lock:
            if _default is None:
                _default = App()
            app = _default
    return app


@overload
def task(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    pool: str | None = None,
    retries: int = 0,
    backoff: Backoff | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    timeout: Seconds | None = None,
    name: str | None = None,
    queue: str = "default",
) -> TaskDecorator: ...


def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make ``fn`` a task of the default app: calling it runs it in the background.

    >>> @offload.task
    ... def work(x: int) -> int:
    ...     return x * x
    >>> work(3).result()
    9

    Options: ``pool`` ("thread", "process" or "async"), ``retries``,
    ``backoff`` (an ``offload.Backoff``), ``retry_on`` (exception types),
    ``timeout`` (seconds), ``name``, ``queue``. The app is looked up at each
    call, not at import, so import order never matters.
    """
    return _declare(fn, options, default_app)


def shutdown(wait: bool = True, *, cancel_pending: bool = False) -> None:
    """Stop the default app (see ``App.shutdown``); the next call starts a new one."""
    global _default
    with _default_lock:
        app, _default = _default, None
    if app is not None:
        app.shutdown(wait, cancel_pending=cancel_pending)
