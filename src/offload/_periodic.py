"""``app.periodic``: declaring a schedule, and the scheduler that sends its ticks.

A schedule belongs to one task (a function declared here, or a task
declared elsewhere) and is stored on its app; every worker of the app runs a
``Scheduler`` for the app's schedules (``offload worker --no-scheduler``
leaves it out), and ``offload scheduler`` runs one alone.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast, overload

from ._brokers._base import Scheduling
from ._brokers._url import redacted
from ._errors import ConfigurationError
from ._message import Message
from ._option_values import _seconds
from ._schedule import MissedPolicy, Schedule, interval
from ._scheduler import TICK_HORIZON, Scheduler
from ._serializers import encode_call
from ._task import CallOptions, P, R, Task, declare

if TYPE_CHECKING:
    from ._app import App
    from ._worker import Worker

CALL_OPTIONS = ("queue", "priority", "retries", "timeout")
"""Task options a schedule of a task declared elsewhere may set for its ticks."""


class PeriodicDecorator(Protocol):
    """``app.periodic(...)``: schedules a declared task, or declares one from a function."""

    @overload
    def __call__(self, fn: Task[P, R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


def periodic(
    app: App,
    *,
    cron: str | None,
    every: float | timedelta | None,
    tz: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None,
    missed: MissedPolicy,
    max_catch_up: int,
    options: dict[str, Any],
) -> PeriodicDecorator:
    """The decorator ``app.periodic(...)`` returns (see ``App.periodic``)."""

    def decorate(target: Callable[..., Any]) -> Task[Any, Any]:
        task, calls = _task_of(app, target, options)
        schedule = Schedule(
            task.name,
            cron=cron,
            every=None if every is None else interval(every),
            tz=tz,
            missed=missed,
            max_catch_up=max_catch_up,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            queue=calls.get("queue"),
            priority=calls.get("priority"),
            retries=calls.get("retries"),
            timeout=_seconds("timeout", calls.get("timeout"), positive=True),
        )
        _check_arguments(app, schedule)
        if task.name in app.schedules:
            raise ConfigurationError(
                f"{task.name} has a schedule already ({app.schedules[task.name].describe()}): "
                "one schedule per task; declare another task for another schedule"
            )
        app.schedules[task.name] = schedule
        if app._embedded is not None:  # in-process and embedded: the ticks start now
            _start_ticking(app, app._embedded.start())
        return task

    return cast("PeriodicDecorator", decorate)


def _task_of(
    app: App, target: Callable[..., Any], options: dict[str, Any]
) -> tuple[Task[Any, Any], dict[str, Any]]:
    """The task a schedule runs (declared now from a function, or given), and its ticks' options."""
    if not isinstance(target, Task):
        return declare(target, options, lambda: app, app.register), {}
    unusable = set(options) - set(CALL_OPTIONS)
    if unusable:
        raise ConfigurationError(
            f"app.periodic(...)({target.name}): {', '.join(sorted(unusable))} belong "
            f"to the task's declaration; a schedule of a declared task takes "
            f"{', '.join(CALL_OPTIONS)} for its ticks"
        )
    app.register(target.spec)
    return target, options


def _start_ticking(app: App, worker: Worker) -> None:
    """Give a running embedded worker a scheduler, if it started without one."""
    if worker.scheduler is None:
        worker.scheduler = scheduler(app)
        if worker.scheduler is not None:
            worker.scheduler.start()


def _check_arguments(app: App, schedule: Schedule) -> None:
    """Refuse at declaration arguments the app could not send with every tick."""
    if app.serializer is not None:
        encode_call(app.serializer, schedule.args, dict(schedule.kwargs))


def scheduler(app: App) -> Scheduler | None:
    """The scheduler of ``app``'s schedules (None without any)."""
    if not app.schedules:
        return None
    broker = app.broker
    if not isinstance(broker, Scheduling):
        raise ConfigurationError(
            f"the broker of {redacted(app.url)} cannot store schedules' fire times"
        )
    return Scheduler(
        broker.schedules,
        app.schedules,
        _sender(app),
        clock=app.clock,
        name=app.name,
    )


def _sender(app: App) -> Callable[[Schedule, float], str]:
    producer = app._producer

    def send(schedule: Schedule, fire: float) -> str:
        spec = app.resolve_task(schedule.task)
        if spec is None:  # registered at declaration: only a bug gets here
            raise ConfigurationError(f"the task {schedule.task} of a schedule is not declared")
        options = CallOptions(
            priority=schedule.priority,
            queue=schedule.queue,
            timeout=schedule.timeout,
            retries=schedule.retries,
            key=schedule.key(fire),
        )
        message: Message = producer.message(spec, schedule.args, dict(schedule.kwargs), options)
        message.key_horizon = TICK_HORIZON
        return producer.store([message])[0]

    return send
