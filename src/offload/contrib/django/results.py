"""An offload job as Django's ``TaskResult``: states, times, arguments, result, errors."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from offload import State
from offload._message import JobInfo
from offload._serializers import Serializer, decode_call

from ._compat import Task, TaskError, TaskResult, TaskResultStatus

STATUS = {
    State.QUEUED: TaskResultStatus.READY,
    State.RETRYING: TaskResultStatus.READY,  # "ready to be executed again", in Django's words
    State.RUNNING: TaskResultStatus.RUNNING,
    State.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    State.FAILED: TaskResultStatus.FAILED,
    State.CANCELLED: TaskResultStatus.FAILED,  # Django has no cancelled state: it did not run
}
"""offload's job states onto Django's ``TaskResultStatus``."""


def task_result(task: Task, job: JobInfo, alias: str, serializer: Serializer | None) -> TaskResult:
    """``job`` as Django sees a task's result.

    offload records no per-attempt worker ids: ``worker_ids`` holds one
    entry per attempt, so ``attempts`` is right. ``started_at`` is unknown
    to offload's inspection and stays ``None``.
    """
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if serializer is not None and job.payload is not None:
        args, kwargs = decode_call(serializer, job.payload)
    status = STATUS[job.state]
    errors = []
    if job.error is not None and status is TaskResultStatus.FAILED:
        errors.append(TaskError(exception_class_path=job.error.type, traceback=job.error.traceback))
    result = TaskResult(
        task=task,
        id=job.id,
        status=status,
        enqueued_at=_moment(job.created),
        started_at=None,
        finished_at=_moment(job.finished),
        last_attempted_at=None,
        args=list(args),
        kwargs=kwargs,
        backend=alias,
        errors=errors,
        worker_ids=["offload"] * job.attempt,
    )
    if status is TaskResultStatus.SUCCESSFUL and serializer is not None and job.result is not None:
        object.__setattr__(result, "_return_value", serializer.decode(job.result))
    return result


def normalize(value: Any) -> Any:
    """A return value as Django stores one: JSON types (a tuple becomes a list)."""
    try:
        from django.utils.json import normalize_json  # Django 6
    except ImportError:  # the backport's own
        from django_tasks.utils import normalize_json
    return normalize_json(value)


def _moment(epoch: float | None) -> datetime | None:
    return None if not epoch else datetime.fromtimestamp(epoch, tz=timezone.utc)
