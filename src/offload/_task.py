"""``Task[P, R]``: what ``@offload.task`` makes of a function."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import (
    Annotated,
    Any,
    Generic,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    cast,
    get_type_hints,
    overload,
)

# Imported ``as`` itself: an explicit re-export (mypy --strict) for the modules
# that declare the overloads of ``task``, so that the version check is made once.
if sys.version_info >= (3, 11):
    from typing import Unpack as Unpack  # noqa: PLC0414
else:  # a dependency on Python 3.10 only (pyproject.toml)
    from typing_extensions import Unpack as Unpack  # noqa: PLC0414

from ._errors import ConfigurationError, TaskNotImportable
from ._handle import Handle
from ._limits import LimitKey, RateLimit, declare_limits
from ._option_values import (
    Seconds,
    _count,
    _dependencies,
    _eta,
    _exception_types,
    _integer,
    _key,
    _name,
    _seconds,
)
from ._progress import track
from ._retry import DEFAULT_BACKOFF, Backoff, RetryPolicy
from ._runner import POOLS, TaskSpec
from ._signature import Signature

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Options for one call, set with ``task.options(...)``."""

    delay: float | None = None
    eta: float | None = None
    priority: int | None = None
    queue: str | None = None
    timeout: float | None = None
    retries: int | None = None
    key: str | None = None
    connection: Any = None
    """A psycopg connection: enqueue in the caller's transaction (PostgreSQL apps)."""
    depends_on: tuple[Any, ...] = ()
    """Handles (or job ids) of jobs that must succeed before this call runs."""


NO_OPTIONS = CallOptions()


class Submitter(Protocol):
    """What a task needs from its app: somewhere to send calls."""

    @property
    def durable(self) -> bool:
        """Calls run in another process: the function must be importable."""
        ...

    def submit(
        self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Handle[Any]: ...

    def submit_many(
        self, spec: TaskSpec, calls: list[tuple[Any, ...]], options: CallOptions
    ) -> list[Handle[Any]]: ...


class Task(Generic[P, R]):
    """A function that runs in the background when called.

    ``task(*args)`` returns a ``Handle[R]`` at once; ``task.fn(*args)``
    calls the plain function inline.
    """

    # Copied from the function by functools.update_wrapper; declared for type checkers.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __init__(self, fn: Callable[P, Any], spec: TaskSpec, app: Callable[[], Submitter]) -> None:
        functools.update_wrapper(self, fn)
        self.fn: Callable[P, Any] = fn
        self.__offload_fn__ = fn  # what a child process calls (see _executors._process)
        self.spec = spec
        self._app = app
        self._import_checked = False

    @property
    def name(self) -> str:
        """The task's name, as stored in messages."""
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        """Run in the background; returns the call's handle at once."""
        app = self._app()
        if not self._import_checked and (self.spec.pool == "process" or app.durable):
            self._check_importable()
        return app.submit(self.spec, args, kwargs, NO_OPTIONS)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        """The same as calling the task (Celery's spelling)."""
        return self(*args, **kwargs)

    async def aio(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        """Call the task from a coroutine without blocking its event loop.

        ``handle = await work.aio(3)``, then ``await handle`` for the result.
        A durable app's enqueue (a round trip to Redis or PostgreSQL, a
        commit on SQLite) runs in a thread of the loop's default executor;
        an in-process call is stored at once, on the loop. Cancelling the
        ``await`` does not take back a call already on its way to the broker.
        """
        from ._asubmit import submit_async

        return await submit_async(self, args, kwargs, NO_OPTIONS)

    def options(
        self,
        *,
        delay: Seconds | None = None,
        eta: datetime | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
        timeout: Seconds | None = None,
        retries: int | None = None,
        key: str | None = None,
        connection: Any = None,
        depends_on: Iterable[Handle[Any] | str] | None = None,
    ) -> TaskCall[P, R]:
        """The task with options changed for one call: ``work.options(delay=60)(3)``.

        ``key`` makes the call idempotent on a durable app: while a job with
        the same key is queued or running, the call returns that job's handle.

        ``connection`` (PostgreSQL apps) writes the job with your own psycopg
        connection, inside your transaction: it exists if you commit, and
        never did if you roll back (then its handle never finishes)::

            with conn.transaction():
                conn.execute("INSERT INTO orders ...")
                send_receipt.options(connection=conn)(order_id)

        ``depends_on=[h1, h2]`` (handles or job ids) runs the call once all
        of those jobs succeeded; if one fails or is cancelled, this call is
        failed with its exception, or cancelled, without running (see
        ``offload.chain`` for workflows).
        """
        options = CallOptions(
            delay=_seconds("delay", delay),
            eta=_eta(eta),
            priority=None if priority is None else _integer("priority", priority),
            queue=None if queue is None else _name(queue, "queue="),
            timeout=_seconds("timeout", timeout, positive=True),
            retries=_count("retries", retries),
            key=key if key is None else _key(key),
            connection=connection,
            depends_on=_dependencies(depends_on),
        )
        return self.with_options(options)

    def with_options(self, options: CallOptions) -> TaskCall[P, R]:
        """The task with ``options`` (checked already) for one call."""
        return TaskCall(self, options)

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature: this task with arguments, to compose into a workflow (not run yet).

        ``offload.chain(fetch.s(url), parse.s(), store.s())``. The arguments
        are not checked against the task's parameters (typed ``Any``): a
        step in a chain receives the previous step's result as its first
        argument, which is not given here. The result type is kept:
        ``Signature[R]``, and a workflow's handle is typed by its last step.
        """
        return Signature(self, args, kwargs, NO_OPTIONS)

    def map(self, *iterables: Iterable[Any], progress: bool = False) -> list[Handle[R]]:
        """Call the task once per item (``zip`` of ``iterables``), in one batch.

        With ``progress=True`` and a terminal on stderr, a live bar counts
        completions.
        """
        return self._map(iterables, progress, NO_OPTIONS)

    def _map(
        self, iterables: tuple[Iterable[Any], ...], progress: bool, options: CallOptions
    ) -> list[Handle[R]]:
        if not iterables:
            raise ConfigurationError(f"{self.name}.map() needs at least one iterable of arguments")
        handles = self.submit_many(list(zip(*iterables, strict=False)), options)
        if progress:
            track(handles, getattr(self.fn, "__name__", self.name))
        return handles

    def submit_many(
        self, calls: list[tuple[Any, ...]], options: CallOptions = NO_OPTIONS
    ) -> list[Handle[R]]:
        """Many calls (positional arguments each) in one batch: one transaction."""
        app = self._app()
        if not self._import_checked and (self.spec.pool == "process" or app.durable):
            self._check_importable()
        return app.submit_many(self.spec, calls, options)

    def __repr__(self) -> str:
        return f"<Task {self.name} pool={self.spec.pool or 'default'}>"

    def _check_importable(self) -> None:
        check_importable(self, self.spec)
        self._import_checked = True


class TaskCall(Generic[P, R]):
    """A task with options for one call; made by ``task.options(...)``."""

    def __init__(self, task: Task[P, R], options: CallOptions) -> None:
        self._task = task
        self._options = options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        task = self._task
        app = task._app()
        if not task._import_checked and (task.spec.pool == "process" or app.durable):
            task._check_importable()
        return app.submit(task.spec, args, kwargs, self._options)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self(*args, **kwargs)

    async def aio(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        """``await work.options(priority=5).aio(3)``: as ``Task.aio``, with these options."""
        from ._asubmit import submit_async

        return await submit_async(self._task, args, kwargs, self._options)

    def map(self, *iterables: Iterable[Any], progress: bool = False) -> list[Handle[R]]:
        return self._task._map(iterables, progress, self._options)

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature with these options (see ``Task.s``)."""
        return Signature(self._task, args, kwargs, self._options)


class TaskDecorator(Protocol):
    """``@task(...)`` with options: turns a function into a ``Task``."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


@dataclass(frozen=True)
class Option:
    """A task option's default, and the line of documentation that goes with it."""

    default: Any
    doc: str

    @property
    def shown(self) -> str:
        """The default as code: ``None``, ``'default'``, ``Exception``."""
        default = self.default
        return default.__name__ if isinstance(default, type) else repr(default)


class TaskOptions(TypedDict, total=False):
    """The options of ``@offload.task(...)`` and ``@app.task(...)``: declared here, once.

    The overloads of both take ``**options: Unpack[TaskOptions]``, so type
    checkers hold a declaration to these types; ``TASK_OPTIONS`` (the
    defaults), ``make_spec`` and the decorators' docstrings are derived from
    it; tests/unit/test_task_options.py holds the README's table to it. A new
    option is one more key here (and a row there).
    """

    pool: Annotated[
        str | None,
        Option(
            None,
            '"thread", "process" or "async"; unset: the worker\'s default pool '
            '("thread"), or "async" for an ``async def`` function',
        ),
    ]
    retries: Annotated[int, Option(0, "more attempts after the first, for ``retry_on``")]
    backoff: Annotated[
        Backoff | None,
        Option(None, "an ``offload.Backoff``: the wait before each retry (exponential, capped)"),
    ]
    retry_on: Annotated[
        type[BaseException] | tuple[type[BaseException], ...],
        Option(Exception, "the exception types that are retried"),
    ]
    timeout: Annotated[Seconds | None, Option(None, "seconds (or a timedelta) an attempt may run")]
    name: Annotated[str | None, Option(None, "the name in messages; unset: ``module.qualname``")]
    queue: Annotated[str, Option("default", "the queue its calls go to")]
    priority: Annotated[int, Option(0, "higher runs first (durable apps)")]
    max_deliveries: Annotated[
        int | None,
        Option(
            None,
            "deliveries without an outcome (a worker crashed) before the job is "
            "dead-lettered; unset: 10 plus ``retries`` (durable apps)",
        ),
    ]
    result_ttl: Annotated[
        Seconds | None,
        Option(None, "seconds to keep the result; unset: the app's ``result_ttl``"),
    ]
    rate_limit: Annotated[
        str | RateLimit | None,
        Option(
            None,
            'calls per unit across every worker: "20/s", "100/m", "5/h", or an '
            "``offload.RateLimit(n, per=seconds, burst=...)``; a call over it waits in the broker",
        ),
    ]
    concurrency: Annotated[
        int | None,
        Option(None, "the most calls running at once across every worker; the others wait"),
    ]
    limit_key: Annotated[
        LimitKey | None,
        Option(
            None,
            "the argument (its name) or a function of the arguments whose value has limits of "
            "its own (a customer, a host); evaluated at the call",
        ),
    ]


def _declared_options() -> dict[str, Option]:
    hints = get_type_hints(TaskOptions, include_extras=True)
    options = {}
    for name, hint in hints.items():
        found = [meta for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, Option)]
        if len(found) != 1:  # a key added without its Option: say so at import, in tests
            raise TypeError(f"TaskOptions[{name!r}] needs Annotated[<type>, Option(...)]")
        options[name] = found[0]
    return options


OPTIONS: dict[str, Option] = _declared_options()
"""Each task option's ``Option``, in declaration order."""

TASK_OPTIONS: dict[str, Any] = {name: option.default for name, option in OPTIONS.items()}
"""Each task option's default, in declaration order."""


def document_options(fn: F) -> F:
    """Append the task options, one line each, to ``fn``'s docstring (for ``help()``)."""
    if fn.__doc__ is not None:  # None under python -OO
        lines = [f"- ``{name}={option.shown}``: {option.doc}" for name, option in OPTIONS.items()]
        head = "Options (declared once, in ``offload._task.TaskOptions``):"
        fn.__doc__ = "\n\n".join([inspect.cleandoc(fn.__doc__), head, "\n".join(lines)])
    return fn


def declare(
    fn: Callable[..., Any] | None,
    options: dict[str, Any],
    app: Callable[[], Submitter],
    register: Callable[[TaskSpec], None],
) -> Any:
    """``@task`` and ``@task(...)``: check the options, make the Task, register it."""
    unknown = set(options) - set(TASK_OPTIONS)
    if unknown:
        scheduling = bool(unknown & {"cron", "every"})
        periodic = " (a schedule: @app.periodic(cron=...) or every=...)" if scheduling else ""
        raise ConfigurationError(
            f"unknown task option(s) {', '.join(sorted(unknown))}{periodic}; "
            f"the options are {', '.join(TASK_OPTIONS)}"
        )

    def decorate(function: Callable[..., Any]) -> Task[Any, Any]:
        spec = make_spec(function, **options)
        register(spec)  # now: a worker imports the module, it never calls the task
        return Task(function, spec, app)

    return decorate if fn is None else decorate(fn)


def make_spec(fn: object, **options: Unpack[TaskOptions]) -> TaskSpec:
    """Check a task's declaration and turn it into a ``TaskSpec``."""
    if not callable(fn):
        raise ConfigurationError(
            f"@task decorates a function; got {fn!r} of type {type(fn).__name__}"
        )
    # Every key present, so that each lookup below is typed by the declaration.
    settings = cast(TaskOptions, {**TASK_OPTIONS, **options})
    pool = _check_pool(fn, settings["pool"], inspect.iscoroutinefunction(fn))
    backoff = settings["backoff"]
    if backoff is not None and not isinstance(backoff, Backoff):
        raise ConfigurationError(f"backoff= takes an offload.Backoff(...), not {backoff!r}")
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    name = _name(settings["name"] or _default_name(fn, module, qualname), "the task name")
    limits = declare_limits(
        fn, name, settings["rate_limit"], settings["concurrency"], settings["limit_key"]
    )
    return TaskSpec(
        name=name,
        fn=fn,
        pool=pool,
        policy=RetryPolicy(
            retries=_count("retries", settings["retries"]) or 0,
            backoff=backoff or DEFAULT_BACKOFF,
            retry_on=_exception_types(settings["retry_on"]),
        ),
        timeout=_seconds("timeout", settings["timeout"], positive=True),
        queue=_name(settings["queue"], "queue="),
        import_path=f"{module}:{qualname}",
        priority=_integer("priority", settings["priority"]),
        max_deliveries=_count("max_deliveries", settings["max_deliveries"], positive=True),
        result_ttl=_seconds("result_ttl", settings["result_ttl"]),
        limits=limits,
    )


def _default_name(fn: object, module: str, qualname: str) -> str:
    if module == "__main__":
        # The script being run: a worker imports it by its own module name
        # (``offload worker script``), where its tasks are ``script.task``.
        module = main_module_name() or module
    base = f"{module}.{qualname}"
    # Lambdas and closures share a qualname (think of a loop making tasks);
    # in this process each is its own task. Another process cannot import
    # them anyway, so their names need not be stable.
    if "<lambda>" in qualname or "<locals>" in qualname:
        return f"{base}#{id(fn):x}"
    return base


def main_module_name() -> str | None:
    """The name a worker imports the running script by: ``pkg.mod`` for
    ``python -m pkg.mod``, ``script`` for ``python script.py``; None in an
    interactive session (nothing to import)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    path: str | None = getattr(main, "__file__", None)
    if path:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem.isidentifier():
            return stem
    return None


def _check_pool(fn: object, pool: str | None, is_async: bool) -> str | None:
    if pool is None:  # the worker's default (thread), but coroutines need the loop
        return "async" if is_async else None
    if pool not in POOLS:
        raise ConfigurationError(
            f"unknown pool {pool!r}: choose one of {', '.join(repr(p) for p in POOLS)}"
        )
    if is_async and pool != "async":
        raise ConfigurationError(
            f"{_fn_name(fn)} is an async def function: it runs on pool='async' "
            f"(the default for coroutine functions), not pool={pool!r}"
        )
    if not is_async and pool == "async":
        raise ConfigurationError(
            f"{_fn_name(fn)} is a plain function: on pool='async' it would block the "
            "event loop. Make it `async def`, or use pool='thread'"
        )
    return pool


def _fn_name(fn: object) -> str:
    return f"{getattr(fn, '__qualname__', fn)!s}()"


def check_importable(task: object, spec: TaskSpec) -> None:
    """Refuse a function another process could not import, saying why and what to do."""
    fn = spec.fn
    qualname = getattr(fn, "__qualname__", "")
    where = f"{spec.name} cannot run in another process (a process pool, a durable worker)"
    fix = "Define it with `def` at the top level of a module, or use pool='thread'."
    if "<lambda>" in qualname:
        raise TaskNotImportable(
            f"{where}: it is a lambda, and a child process finds "
            f"functions by module and name. {fix}"
        )
    if "<locals>" in qualname:
        outer = qualname.split(".<locals>")[0]
        raise TaskNotImportable(
            f"{where}: it is defined inside {outer}(), so a child process cannot import it. {fix}"
        )
    module_name, _, path = (spec.import_path or "").partition(":")
    if module_name == "__main__" and not getattr(sys.modules.get("__main__"), "__file__", None):
        raise TaskNotImportable(
            f"{where}: it is defined in an interactive session, which a "
            "child process cannot import. Put it in a .py file and import it."
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in path.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise TaskNotImportable(
            f"{where}: {module_name}:{path} does not import ({error}). {fix}"
        ) from None
    if (
        target is not task
        and target is not fn
        and getattr(target, "__offload_fn__", None) is not fn
    ):
        raise TaskNotImportable(
            f"{where}: {module_name}.{path} is another object, so a child "
            f"process would call the wrong function. {fix}"
        )
