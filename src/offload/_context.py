"""The running job's context: ``offload.current()`` inside a task.

A ``contextvars`` value, set by ``invoke`` around each attempt wherever the
code runs (a pool thread, the event loop, a child process), so it follows
``asyncio`` tasks and never leaks from one job to the next on a thread.
"""

from __future__ import annotations

import contextvars
import math
import time
import types
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from ._errors import Cancelled, OffloadError
from ._message import Progress, storable

MAX_NOTE = 1000
"""Characters kept of a progress note."""

MAX_STEP_NAME = 200
"""Characters in a durable step's name."""

P = ParamSpec("P")
R = TypeVar("R")


class JobServices(Protocol):
    """What a job's context asks of what runs the job: the runner, or a process pool's
    parent for its child. ``delivery`` is the job's (None in a child)."""

    def report(self, delivery: Any, progress: Progress) -> None:
        """Pass on what the job reported of its progress."""

    def recorded(self, delivery: Any, name: str) -> tuple[bool, Any]:
        """Whether step ``name`` of this job finished in an earlier run, and its result."""

    def record(self, delivery: Any, name: str, value: Any) -> None:
        """Keep the result of step ``name``: a later run of the job returns it."""


class NoCurrentJob(OffloadError, LookupError):
    """``offload.current()`` was called outside a running task."""


class JobContext:
    """What a running job knows about itself.

    ``id``, ``task``, ``attempt`` (1 on the first delivery), ``queue`` and
    ``meta`` (the message's small string map, e.g. trace context; read only);
    ``progress(...)`` tells whoever holds the job's handle how far it got.
    """

    __slots__ = (
        "_cancelled",
        "_delivery",
        "_fed",
        "_meta",
        "_services",
        "attempt",
        "id",
        "queue",
        "task",
    )

    def __init__(
        self,
        id: str,  # noqa: A002 - the job's id, as users call it
        task: str,
        attempt: int,
        queue: str,
        meta: Mapping[str, str] | None = None,
        *,
        services: JobServices | None = None,
        delivery: object = None,
    ) -> None:
        self.id = id
        self.task = task
        self.attempt = attempt
        self.queue = queue
        self._meta = meta  # wrapped when read: most jobs never look
        self._services = services
        self._delivery = delivery
        self._cancelled = False  # someone cancelled the job while it runs
        self._fed: tuple[Any, ...] = ()
        """Values put before the message's own arguments: a workflow step's inputs (the
        results of the steps it depends on), set by the workflow gate before the call."""

    @property
    def cancelled(self) -> bool:
        """Whether someone cancelled this job while it runs (``handle.cancel()``,
        ``offload cancel``): a long task on a thread should check it and stop."""
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise ``offload.Cancelled`` if the job was cancelled: the task stops there."""
        if self._cancelled:
            raise Cancelled(f"job {self.id} ({self.task}) was cancelled while it ran")

    def progress(self, done: float, total: float | None = None, note: str | None = None) -> None:
        """Report how far the job got: ``done`` of ``total`` (unknown: None), and a note.

        The job's handle sees it (``handle.progress``) in this process at
        once, and from any process through a durable broker, which stores
        it a few times a second at most: call it as often as you like.
        """
        if isinstance(done, bool) or not isinstance(done, (int, float)) or not math.isfinite(done):
            raise TypeError(f"progress(done=...) takes a finite number, not {done!r}")
        if total is not None and (
            isinstance(total, bool)
            or not isinstance(total, (int, float))
            or not 0 < total < math.inf
        ):
            raise ValueError(
                f"progress(total=...) is a finite number above 0 or None, not {total!r}"
            )
        if note is not None and not isinstance(note, str):
            raise TypeError(f"progress(note=...) is a str or None, not {type(note).__name__}")
        text = None if note is None else storable(note[:MAX_NOTE])
        reported = Progress(float(done), None if total is None else float(total), text, time.time())
        if self._services is not None:
            self._services.report(self._delivery, reported)

    @property
    def meta(self) -> Mapping[str, str]:
        return types.MappingProxyType(dict(self._meta or {}))

    def __repr__(self) -> str:
        return f"<JobContext {self.task} {self.id} attempt {self.attempt} on {self.queue!r}>"

    def fields(self) -> tuple[str, str, int, str, dict[str, str]]:
        """Plain values, to rebuild the context in a child process."""
        return (self.id, self.task, self.attempt, self.queue, dict(self.meta))


CURRENT: contextvars.ContextVar[JobContext] = contextvars.ContextVar("offload_current_job")


def current() -> JobContext:
    """The job running here: its id, task, attempt, queue and meta.

    Raises ``offload.NoCurrentJob`` (a ``LookupError``) outside a task.
    """
    try:
        return CURRENT.get()
    except LookupError:
        raise NoCurrentJob(
            "offload.current() was called outside a running task; call it from inside "
            "the task's function (or a function it calls, in the same thread or asyncio task)"
        ) from None


def step(name: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn(*args, **kwargs)`` as step ``name`` of the running job, once.

    Its result is recorded under the job (in the broker, for a durable app):
    when the job runs again, after a crash, a retry or ``offload retry``,
    a step that finished returns its recorded result instead of running
    again. Names are the steps' identity: give each step of a job its own
    (``f"email-{user_id}"`` in a loop). A step that raises records nothing.
    Outside a task it raises ``offload.NoCurrentJob``.
    """
    job = current()
    if not isinstance(name, str) or not name or len(name) > MAX_STEP_NAME or storable(name) != name:
        raise ValueError(
            f"offload.step(name, ...) takes a non-empty str of at most {MAX_STEP_NAME} "
            f"characters (no NUL), unique within the job, not {name!r:.80}"
        )
    services = job._services
    if services is None:  # a context made by hand: nothing to record with
        return fn(*args, **kwargs)
    found, value = services.recorded(job._delivery, name)
    if found:
        return value  # type: ignore[no-any-return]
    value = fn(*args, **kwargs)
    services.record(job._delivery, name, value)
    return value


def fed(job: JobContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The positional arguments of the call: what a workflow step was fed, then its own."""
    prefix = job._fed
    return (*prefix, *args) if prefix else args


def feed(job: JobContext, values: tuple[Any, ...]) -> None:
    """Put ``values`` before the call's own positional arguments (the workflow gate)."""
    job._fed = values


def services_of(job: JobContext) -> tuple[JobServices | None, object]:
    """A context's services and delivery: what a process pool's parent serves its child with."""
    return job._services, job._delivery


def request_cancel(job: JobContext) -> bool:
    """Mark ``job`` cancelled (its worker was asked); ``False`` if it already was."""
    if job._cancelled:
        return False
    job._cancelled = True
    return True
