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
from typing import Any

from ._errors import OffloadError
from ._message import Progress, storable

MAX_NOTE = 1000
"""Characters kept of a progress note."""

Reporter = Callable[[Any, Progress], None]
"""Where a job's progress goes: called with the job's delivery (None in a child process)."""


class NoCurrentJob(OffloadError, LookupError):
    """``offload.current()`` was called outside a running task."""


class JobContext:
    """What a running job knows about itself.

    ``id``, ``task``, ``attempt`` (1 on the first delivery), ``queue`` and
    ``meta`` (the message's small string map, e.g. trace context; read only);
    ``progress(...)`` tells whoever holds the job's handle how far it got.
    """

    __slots__ = ("_delivery", "_meta", "_report", "attempt", "id", "queue", "task")

    def __init__(
        self,
        id: str,  # noqa: A002 - the job's id, as users call it
        task: str,
        attempt: int,
        queue: str,
        meta: Mapping[str, str] | None = None,
        *,
        report: Reporter | None = None,
        delivery: object = None,
    ) -> None:
        self.id = id
        self.task = task
        self.attempt = attempt
        self.queue = queue
        self._meta = meta  # wrapped when read: most jobs never look
        self._report = report
        self._delivery = delivery

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
        if self._report is not None:
            self._report(self._delivery, reported)

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
