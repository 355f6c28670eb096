"""The running job's context: ``offload.current()`` inside a task.

A ``contextvars`` value, set by ``invoke`` around each attempt wherever the
code runs (a pool thread, the event loop, a child process), so it follows
``asyncio`` tasks and never leaks from one job to the next on a thread.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Mapping

from ._errors import OffloadError


class NoCurrentJob(OffloadError, LookupError):
    """``offload.current()`` was called outside a running task."""


class JobContext:
    """What a running job knows about itself.

    ``id``, ``task``, ``attempt`` (1 on the first delivery), ``queue`` and
    ``meta`` (the message's small string map, e.g. trace context; read only).
    Progress reporting and cancellation will join these.
    """

    __slots__ = ("_meta", "attempt", "id", "queue", "task")

    def __init__(
        self,
        id: str,  # noqa: A002 - the job's id, as users call it
        task: str,
        attempt: int,
        queue: str,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        self.id = id
        self.task = task
        self.attempt = attempt
        self.queue = queue
        self._meta = meta  # wrapped when read: most jobs never look

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
