"""``OffloadBackend``: Django's tasks framework (``django.tasks``) on offload's brokers.

Tasks declared with Django's ``@task`` are stored in an offload broker by
``enqueue``/``aenqueue`` and run by offload workers (``python manage.py
offload_worker``); ``get_result`` reads the job back as a ``TaskResult``.
Each Django task becomes an offload task of the same name
(``module.qualname``), declared when the decorator runs, so a worker runs
only the tasks its project declares: nothing is imported because a stored
job names it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from inspect import iscoroutinefunction
from typing import Any

from django.db import close_old_connections, transaction

import offload
from offload._runner import TaskSpec
from offload._task import CallOptions, make_spec

from ._compat import (
    BaseTaskBackend,
    InvalidTaskBackend,
    Task,
    TaskContext,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from .results import normalize, task_result


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadTask(Task):  # type: ignore[misc]  # Django's dataclass, untyped
    """Django's ``Task``, plus ``enqueue_on_commit``: ``@task(enqueue_on_commit=True)``.

    ``True``: ``enqueue()`` inside a transaction stores the job only once
    it commits (``transaction.on_commit``), so a worker never runs ahead of
    the rows the task reads, and a rolled-back request enqueues nothing.
    ``None``: the backend's ``OPTIONS["enqueue_on_commit"]`` (default False).
    """

    enqueue_on_commit: bool | None = None


class CloseDatabaseConnections(offload.Middleware):
    """Closes Django's stale database connections around each job, as Django does per request.

    A worker thread lives for many jobs: without this, a connection the
    database closed (a restart, an idle timeout) fails the next job of that
    thread, and ``CONN_MAX_AGE`` would never be honoured.
    """

    def execute(self, job: offload.JobContext, call_next: Callable[[], Any]) -> Any:
        close_old_connections()
        try:
            return call_next()
        finally:
            close_old_connections()


class _Shared:
    """What every thread's backend of one alias shares: Django makes one backend per thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.app: offload.App | None = None
        self.specs: dict[str, tuple[Task, TaskSpec]] = {}


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


class OffloadBackend(BaseTaskBackend):  # type: ignore[misc]  # Django's class, untyped
    """``TASKS = {"default": {"BACKEND": "offload.contrib.django.OffloadBackend",
    "OPTIONS": {"url": "redis://127.0.0.1:6379/0"}}}``.

    ``OPTIONS``: ``url`` (else ``OFFLOAD_URL``), ``enqueue_on_commit``
    (default False), and any keyword of ``offload.App`` (``namespace``,
    ``result_ttl``, ``include``, ...). ``QUEUES`` lists the queue names
    tasks may use (Django's default: ``["default"]``); ``offload_worker``
    serves them all unless told otherwise.
    """

    task_class = OffloadTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        url = options.pop("url", None) or os.environ.get("OFFLOAD_URL")
        if not url:
            raise InvalidTaskBackend(
                f'TASKS["{alias}"]["OPTIONS"]["url"] is missing: give the offload broker URL '
                '(e.g. "redis://127.0.0.1:6379/0"), or set OFFLOAD_URL'
            )
        self.url: str = url
        self.enqueue_on_commit = bool(options.pop("enqueue_on_commit", False))
        self._app_options = options
        with _SHARED_LOCK:
            self._shared = _SHARED.setdefault(f"{alias}\0{url}", _Shared())

    @property
    def app(self) -> offload.App:
        """The offload app behind this backend (one per alias and URL in a process)."""
        shared = self._shared
        with shared.lock:
            if shared.app is None:
                app = offload.App(
                    self.url,
                    name=f"django-{self.alias}",
                    middleware=[CloseDatabaseConnections()],
                    **self._app_options,
                )
                for _, spec in shared.specs.values():
                    app.register(spec)
                shared.app = app
            return shared.app

    def validate_task(self, task: Task) -> None:
        """Django's checks, then declare the task to offload (its workers run only these)."""
        super().validate_task(task)
        self.declare(task)

    def declare(self, task: Task) -> TaskSpec:
        """The offload task that runs ``task``'s function (one per function)."""
        shared = self._shared
        name = task.module_path
        with shared.lock:
            known = shared.specs.get(name)
            if known is not None and known[0].func is task.func:
                return known[1]
            spec = make_spec(_runner(self.alias, task), name=name)
            shared.specs[name] = (task, spec)
            if shared.app is not None:
                shared.app.register(spec)
        return spec

    def task_named(self, name: str) -> Task | None:
        """The Django task declared under ``name`` in this process, if any."""
        with self._shared.lock:
            known = self._shared.specs.get(name)
        return None if known is None else known[0]

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Store a call of ``task``; its ``TaskResult`` (READY), whose id is the job's."""
        self.validate_task(task)
        spec = self.declare(task)
        run_after = task.run_after
        options = CallOptions(
            queue=task.queue_name,
            priority=task.priority,
            eta=None if run_after is None else run_after.timestamp(),
        )
        app = self.app
        producer = app._producer  # the message first: its id is the result's, before it is sent
        message = producer.message(spec, tuple(args), dict(kwargs), options)
        result = TaskResult(
            task=task,
            id=message.id,
            status=TaskResultStatus.READY,
            enqueued_at=datetime.now(timezone.utc),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

        def send() -> None:
            producer.send([message])
            task_enqueued.send(type(self), task_result=result)

        on_commit = getattr(task, "enqueue_on_commit", None)
        if self.enqueue_on_commit if on_commit is None else on_commit:
            transaction.on_commit(send, robust=False)
        else:
            send()
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The job ``result_id`` as a ``TaskResult``; ``TaskResultDoesNotExist`` if unknown."""
        app = self.app
        job = app.job(result_id)
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        task = self.task_named(job.task)
        if task is None:
            raise TaskResultDoesNotExist(
                f"{result_id} is a job of {job.task}, which this process does not declare: "
                "import the module that defines it (offload_worker imports each app's "
                "tasks module)"
            )
        return task_result(task, job, self.alias, app.serializer)


def _runner(alias: str, task: Task) -> Callable[..., Any]:
    """What an offload worker calls with the job's arguments: the task's function."""
    func = task.func
    if iscoroutinefunction(func):

        async def run_coroutine(*args: Any, **kwargs: Any) -> Any:
            extra = _context(alias, task, args, kwargs) if task.takes_context else ()
            return normalize(await func(*extra, *args, **kwargs))

        return run_coroutine

    def run(*args: Any, **kwargs: Any) -> Any:
        extra = _context(alias, task, args, kwargs) if task.takes_context else ()
        return normalize(func(*extra, *args, **kwargs))

    return run


def _context(alias: str, task: Task, args: Any, kwargs: Any) -> tuple[TaskContext]:
    """Django's ``TaskContext`` for a task declared with ``takes_context=True``."""
    job = offload.current()
    now = datetime.now(timezone.utc)
    running = TaskResult(
        task=task,
        id=job.id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=list(args),
        kwargs=dict(kwargs),
        backend=alias,
        errors=[],
        worker_ids=[f"offload-{os.getpid()}"] * job.attempt,
    )
    return (TaskContext(task_result=running),)
