"""``App``: a broker, the tasks declared on it, and (optionally) a worker inside."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, overload

from ._brokers import Broker, Inspector
from ._brokers._base import Inspectable, ProgressStore
from ._brokers._url import is_in_process, open_broker, redacted
from ._clock import SYSTEM_CLOCK, Clock
from ._declared import Declared
from ._embedded import EmbeddedWorker, OnExit
from ._errors import ConfigurationError
from ._executors import check_size
from ._handle import Handle, HandleMap, WeakHandles, cancel_unstarted
from ._message import JobInfo
from ._middleware import Chain, Middleware
from ._option_values import Seconds
from ._periodic import PeriodicDecorator, periodic
from ._periodic import scheduler as periodic_scheduler
from ._producer import Producer
from ._runner import Runner, TaskSpec
from ._schedule import MissedPolicy, Schedule
from ._serializers import JsonSerializer, ModulePolicy, PickleSerializer, Serializer
from ._task import (
    CallOptions,
    P,
    R,
    Task,
    TaskDecorator,
    TaskOptions,
    Unpack,
    declare,
    document_options,
    main_module_name,
    make_spec,
)
from ._worker import DURABLE_THREADS, Worker, check_pool, default_size
from ._workflow_gate import Gate
from ._workflows import COLLECTOR, Workflows, collector_spec

log = logging.getLogger(__name__)

DAY = 86400.0


class App:
    """Where tasks run: a broker and the workers that serve it.

    ``App()`` (or ``App("memory://")``) runs tasks inside this process, on a
    worker started with the first call. ``App("sqlite:///jobs.db")``,
    ``App("redis://host:6379/0")`` or ``App("postgresql://user@host/db")``
    store every call before returning its handle; ``offload worker
    module:app`` processes run them, and the work survives crashes and
    restarts.

    Options:

    - ``embedded_worker``: run a worker in this process for a durable app.
    - ``serializer``: ``"json"`` (default) or ``"pickle"`` (needs
      ``pickle_key``, shared by producers and workers; payloads are signed).
    - ``result_ttl``: seconds to keep results of finished jobs (a day);
      failed jobs stay until purged. ``reuse_window``: seconds during which
      a call with the key of a succeeded job returns that job (0: never).
    - ``include``: modules whose plain functions a worker may run for
      ``app.enqueue(fn)``, and whose dataclasses and enums payloads may
      carry (``["myproject.jobs"]``, as Celery's ``include``). The modules
      of the app's declared tasks are included already. Nothing else runs:
      a message naming anything else is dead-lettered, nothing imported.
    - ``middleware``: ``offload.Middleware`` objects that run around every
      enqueue and every attempt, first in the list outermost (see
      ``offload.Middleware``).
    - ``namespace``: isolates apps sharing a Redis or PostgreSQL server (also
      ``?namespace=`` in the URL). ``migrate=False``: leave PostgreSQL schema
      migrations to ``offload migrate``.
    - ``threads``, ``processes``: pool sizes (``app.resize`` changes them later).
    - ``on_exit``: unfinished in-process calls at interpreter exit are
      waited for (``"wait"``, like ``concurrent.futures``) or cancelled
      (``"cancel"``). An embedded durable worker releases them instead.
    - ``clock``: time as a value (``offload.testing.FakeClock`` in tests).
    - ``registry``: internal; the default app shares ``@offload.task``'s.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        embedded_worker: bool = False,
        serializer: Literal["json", "pickle"] | Serializer = "json",
        pickle_key: bytes | None = None,
        result_ttl: Seconds = DAY,
        reuse_window: Seconds = 0.0,
        namespace: str | None = None,
        include: Sequence[str] = (),
        middleware: Sequence[Middleware] = (),
        migrate: bool = True,
        threads: int | None = None,
        processes: int | None = None,
        on_exit: OnExit = "wait",
        clock: Clock = SYSTEM_CLOCK,
        name: str = "offload",
        registry: dict[str, TaskSpec] | None = None,
    ) -> None:
        self.url = url or "memory://"
        self.durable = not is_in_process(self.url)
        """Calls are stored in a broker and may run in other processes."""
        self.on_exit: OnExit = _checked_on_exit(on_exit)
        self.clock = clock
        self.name = name
        ttl, reuse = result_ttl, reuse_window
        self.broker = _open(self.url, clock, ttl, reuse, namespace=namespace, migrate=migrate)
        self._registry = _with_collector({} if registry is None else registry)
        self._declared = Declared(self._registry, include)
        classes = self._declared.allows_module
        self.serializer = _serializer(serializer, pickle_key, classes) if self.durable else None
        # In-process the app keeps each handle until its call ends (the result
        # has nowhere else to go); durable handles are weak: the broker has it.
        in_process: dict[str, Handle[Any]] = {}
        self._handles: HandleMap = WeakHandles() if self.durable else in_process
        chain = Chain(middleware) if middleware else None
        self.middleware = () if chain is None else chain.middleware
        gate = Gate(clock, lambda: self.inspector, self.serializer)  # then every middleware
        self._runner = _runner(self, chain, Chain([gate, *self.middleware]))
        self._sizes = _sizes(threads, processes, self.durable)
        self._embedded = _embedded(self, on_exit) if embedded_worker or not self.durable else None
        self._producer = _producer(self, chain, classes)
        self.workflows = _workflows(self, gate)
        """Workflows and ``depends_on=`` (``offload.chain``): their batches and their gate."""
        self._adhoc: dict[Callable[..., Any], Task[Any, Any]] = {}
        self._lock = threading.Lock()
        self.schedules: dict[str, Schedule] = {}
        """The app's periodic schedules by task name (``app.periodic``)."""

    # -- declaring tasks ------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(self, **options: Unpack[TaskOptions]) -> TaskDecorator: ...

    @document_options  # type: ignore[misc]
    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Declare a task on this app: ``@app.task`` or ``@app.task(retries=3)``."""
        return declare(fn, options, lambda: self, self.register)

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: Seconds | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: MissedPolicy = "skip",
        max_catch_up: int = 10,
        **options: Unpack[TaskOptions],
    ) -> PeriodicDecorator:
        """Run a task on a schedule: ``@app.periodic(cron="*/5 * * * *")`` or ``every=30``.

        Decorates a function (declared as a task with ``options``, as
        ``@app.task``) or a task declared elsewhere:
        ``app.periodic(every=timedelta(hours=1))(send_report)`` (``options``
        then only ``queue``, ``priority``, ``retries``, ``timeout``). ``tz``:
        the IANA time zone of ``cron`` (UTC by default); ``args``/``kwargs``:
        the call each tick makes. ``missed``: after every scheduler was down,
        ``"skip"`` the missed ticks, run ``"once"`` for them, or run ``"all"``
        of them (at most ``max_catch_up``). Every worker runs the schedules
        (``offload worker --no-scheduler`` opts out); however many run, each
        tick is enqueued once, under the key ``periodic:{task}:{fire time}``.
        """
        return periodic(
            self,
            cron=cron,
            every=every,
            tz=tz,
            args=tuple(args),
            kwargs=kwargs,
            missed=missed,
            max_catch_up=max_catch_up,
            options=dict(options),
        )

    def register(self, spec: TaskSpec) -> None:
        """Make ``spec`` known to this app's workers (done by ``@app.task``)."""
        self._registry[spec.name] = spec

    @property
    def include(self) -> frozenset[str]:
        """The modules this app includes (``include=``), beside its tasks' own."""
        return self._declared.include

    def resolve_task(self, name: str) -> TaskSpec | None:
        """The declared task called ``name``; None if this app declares none.

        Names of decorated tasks are ``module.qualname``; a module in
        ``include`` is imported to find them. ``app.enqueue(fn)`` names a
        plain function ``module:qualname``: it runs only if its module is
        included (``offload.TaskNotAllowed`` otherwise). Nothing is imported
        because a message names it.
        """
        return self._declared.resolve(name)

    # -- calling --------------------------------------------------------------------

    def enqueue(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Handle[R]:
        """Run a plain importable function in the background (RQ's ``q.enqueue``)."""
        return _adhoc_task(self, fn)(*args, **kwargs)

    def enqueue_many(
        self, fn: Callable[..., R], calls: Sequence[tuple[Any, ...]], /
    ) -> list[Handle[R]]:
        """Many calls of a plain function (positional arguments), stored in one batch."""
        return _adhoc_task(self, fn).submit_many([tuple(args) for args in calls])

    def handle(self, job_id: str) -> Handle[Any]:
        """A handle for the job ``job_id``, from any process that reaches the broker."""
        handle = self._handles.get(job_id)
        if handle is not None:
            return handle
        job = self.inspector.job(job_id)
        handle = Handle(job_id, job.task if job is not None else "?")
        if self.durable:
            self._handles[job_id] = handle  # an embedded worker settles it directly
            self._producer.watch(handle)
        elif job is None:
            raise ConfigurationError(f"no job {job_id} in this in-process app")
        return handle

    def job(self, job_id: str) -> JobInfo | None:
        """What the broker knows of a job: state, attempts, result, last error, progress."""
        inspector = self.inspector
        info = inspector.job(job_id)
        if info is not None and isinstance(inspector, ProgressStore):
            info.progress = inspector.progress(job_id)
        return info

    def submit(
        self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Handle[Any]:
        """Send one call of ``spec``; its handle (used by ``Task.__call__``)."""
        if options.depends_on:
            return self.workflows.submit(spec, [(args, kwargs)], options)[0]
        return self._producer.submit(spec, args, kwargs, options)

    def submit_many(
        self, spec: TaskSpec, calls: list[tuple[Any, ...]], options: CallOptions
    ) -> list[Handle[Any]]:
        """Send many calls of ``spec`` in one batch (one transaction)."""
        if options.depends_on:
            return self.workflows.submit(spec, [(args, {}) for args in calls], options)
        producer = self._producer
        messages = [producer.message(spec, args, {}, options) for args in calls]
        return producer.send(messages, options.connection)

    @property
    def inspector(self) -> Inspector:
        """What the broker knows of its jobs (what the CLI and dashboard read)."""
        if not isinstance(self.broker, Inspectable):
            raise ConfigurationError(f"the broker of {redacted(self.url)} cannot be inspected")
        return self.broker.inspector

    # -- pools and workers ----------------------------------------------------------

    def pool_size(self, pool: str = "thread") -> int:
        """How many calls of ``pool`` ("thread", "process", "async") run at once."""
        check_pool(pool)
        worker = self._embedded.worker if self._embedded is not None else None
        if worker is not None:
            return worker.size(pool)
        return self._sizes.get(pool) or default_size(pool)

    def resize(self, pool: str, size: int) -> None:
        """Change a pool's size, even while it runs: ``app.resize("thread", 110)``."""
        check_pool(pool)
        check_size(size)
        with self._lock:
            self._sizes[pool] = size
            worker = self._embedded.worker if self._embedded is not None else None
        if worker is not None:
            worker.resize(pool, size)

    def worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        pool: str = "thread",
        concurrency: int | None = None,
        lease: float | None = 30.0,
        scheduler: bool = True,
    ) -> Worker:
        """A worker for this app's broker (not started): what ``offload worker`` runs.

        In-process apps pass ``lease=None``: the broker lives in this process,
        so only a jump of the clock could make a lease lapse, and that must
        not run a call twice. ``scheduler``: also send the ticks of the app's
        periodic schedules (a thread, when it has any).
        """
        sizes = dict(self._sizes)
        if concurrency is not None:
            check_size(concurrency)
            sizes[pool] = concurrency
        return Worker(
            self.broker,
            self._runner,
            sizes=sizes,
            queues=queues,
            default_pool=pool,
            lease=lease,
            clock=self.clock,
            name=self.name,
            scheduler=periodic_scheduler(self) if scheduler else None,
        )

    # -- life cycle -----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Calls made from this process that have not finished yet."""
        return sum(1 for handle in list(self._handles.values()) if not handle.done())

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every call made so far has finished; ``False`` on timeout."""
        handles = list(self._handles.values())
        _, not_done = concurrent.futures.wait(handles, timeout)
        return not not_done

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stop the app's worker and release the broker.

        With ``wait``, first wait for every unfinished call of this process
        (in-process, or with an embedded worker); with ``cancel_pending``,
        cancel the calls that have not started instead.
        """
        embedded = self._embedded
        if cancel_pending:
            for handle in list(self._handles.values()):
                cancel_unstarted(handle)
        if wait and embedded is not None:
            self.join()
        if embedded is not None:
            embedded.stop(wait)
        self._producer.stop()
        self.broker.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<offload.App {redacted(self.url)} tasks={len(self._registry)}>"


def _adhoc_task(app: App, fn: Callable[..., Any]) -> Task[Any, Any]:
    """The task ``app.enqueue(fn)`` sends: made once per function, named by its import path."""
    task = app._adhoc.get(fn)
    if task is None:
        name = _import_name(fn)
        if app.durable:  # a worker would refuse it: say so now, at the call
            app._declared.check_function(fn, name)
        spec = make_spec(fn, name=name)
        task = app._adhoc[fn] = Task(fn, spec, lambda: app)
        app.register(spec)
    return task


def _checked_on_exit(on_exit: str) -> OnExit:
    if on_exit not in ("wait", "cancel"):
        raise ConfigurationError(f"on_exit={on_exit!r}: choose 'wait' or 'cancel'")
    return on_exit  # type: ignore[return-value]  # one of the two, checked


def _runner(app: App, chain: Chain | None, gated: Chain) -> Runner:
    """The app's runner: workflow steps run through ``gated`` (the gate, then the middleware)."""
    return Runner(
        app.broker,
        app._registry,
        app.clock,
        app._handles,
        serializer=app.serializer,
        resolve=app.resolve_task,
        chain=chain,
        gated=gated,
    )


def _with_collector(registry: dict[str, TaskSpec]) -> dict[str, TaskSpec]:
    """Every app declares offload's own task, the collector of groups' results."""
    if COLLECTOR not in registry:
        registry[COLLECTOR] = collector_spec()
    return registry


def _workflows(app: App, gate: Gate) -> Workflows:
    inspector = lambda: app.inspector  # noqa: E731 - read when first needed
    return Workflows(
        app._producer, app._handles, app.clock, inspector, durable=app.durable, gate=gate
    )


def _embedded(app: App, on_exit: OnExit) -> EmbeddedWorker:
    return EmbeddedWorker(
        functools.partial(app.worker, lease=30.0 if app.durable else None),
        app._handles,
        durable=app.durable,
        on_exit=on_exit,
        describe=app.__repr__,
    )


def _producer(app: App, chain: Chain | None, classes: ModulePolicy) -> Producer:
    return Producer(
        app.broker,
        app.clock,
        app._handles,
        url=app.url,
        serializer=app.serializer,
        chain=chain,
        registry=app._registry,
        embedded=app._embedded,
        inspector=lambda: app.inspector,
        classes=classes,
        name=app.name,
    )


def _open(
    url: str,
    clock: Clock,
    result_ttl: Seconds,
    reuse_window: Seconds,
    *,
    namespace: str | None,
    migrate: bool,
) -> Broker:
    durable = not is_in_process(url)
    ttl = _seconds(result_ttl) if durable else 0.0  # in-process: handles hold results
    options: dict[str, Any] = {"result_ttl": ttl, "reuse_window": _seconds(reuse_window)}
    if namespace is not None:
        options["namespace"] = namespace  # several apps on one server
    if not migrate:
        options["migrate"] = False  # PostgreSQL: leave it to `offload migrate`
    broker: Broker = open_broker(url, clock, **options)
    return broker


def _sizes(threads: int | None, processes: int | None, durable: bool) -> dict[str, int]:
    sizes: dict[str, int] = {"thread": DURABLE_THREADS} if durable else {}
    for pool, size in (("thread", threads), ("process", processes)):
        if size is not None:
            check_size(size)  # here, not in the worker's thread where it would hang calls
            sizes[pool] = size
    return sizes


def _seconds(value: Seconds) -> float:
    seconds = value if isinstance(value, (int, float)) else value.total_seconds()
    if seconds < 0:
        raise ConfigurationError(f"a duration must be 0 seconds or more, not {value!r}")
    return float(seconds)


def _serializer(
    choice: str | Serializer, pickle_key: bytes | None, classes: ModulePolicy
) -> Serializer:
    if choice == "json":
        return JsonSerializer(modules=classes)
    if choice == "pickle":
        if pickle_key is None:
            raise ConfigurationError(
                "serializer='pickle' needs pickle_key=<secret bytes, 16 or more>, shared by "
                "producers and workers: unsigned pickle would let anyone who can write to the "
                "broker run code in your workers"
            )
        return PickleSerializer(pickle_key)
    if isinstance(choice, str):
        raise ConfigurationError(f"serializer={choice!r}: choose 'json' or 'pickle'")
    return choice


def _import_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    if module == "__main__":  # the script being run, as a worker imports it
        module = main_module_name() or module
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname:
        raise ConfigurationError(f"{fn!r} has no module and name to import it by")
    return f"{module}:{qualname}"
