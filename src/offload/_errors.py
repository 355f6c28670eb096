"""Everything that can go wrong, under one root: ``OffloadError``.

Each exception also derives from the standard exception a caller would
naturally catch (``ValueError``, ``TimeoutError``, ...), so existing
``except`` clauses keep working.
"""

from __future__ import annotations

import concurrent.futures


class OffloadError(Exception):
    """The root of every error offload raises."""


class ConfigurationError(OffloadError, ValueError):
    """A task, an option or an app was declared in a way that cannot work."""


class TaskNotImportable(ConfigurationError, TypeError):
    """A function that another process must import cannot be imported.

    Raised when a lambda, a closure or a function defined inside another
    function is sent to a process pool (or, later, a durable queue): the
    other process finds functions by their module and name.
    """


class TaskTimeout(OffloadError, TimeoutError):
    """A task ran longer than its ``timeout=``."""


class ResultTimeout(OffloadError, concurrent.futures.TimeoutError):
    """``handle.result(timeout)`` gave up waiting; the task is still going."""


class TaskCancelled(OffloadError, concurrent.futures.CancelledError):
    """The task was cancelled: before it ran, or while it ran (its handle raises this)."""


class Cancelled(OffloadError):
    """Raised inside a task by ``offload.current().check_cancelled()`` once someone
    cancelled it: let it propagate (or return); the job is recorded cancelled."""


class WorkerLost(OffloadError):
    """The process running a task died before it reported a result."""


class Retry(OffloadError):
    """Raise from a task to ask for another attempt, after ``delay`` seconds.

    >>> @offload.task(retries=5)
    ... def poll(url: str) -> str:
    ...     if not ready(url):
    ...         raise offload.Retry(delay=30)
    ...     return fetch(url)

    ``delay=None`` uses the task's backoff policy. The request counts as an
    attempt: when the task has no retries left, the handle fails with this
    exception.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        self.delay = delay
        self.reason = reason
        when = "per the backoff policy" if delay is None else f"in {delay:g}s"
        super().__init__(f"retry requested {when}" + (f": {reason}" if reason else ""))


class RemoteTraceback(Exception):
    """The traceback of an exception raised in another process, as text.

    Attached as ``__cause__`` of the re-raised exception so that the
    printed traceback shows where the task failed in the child.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)

    def __str__(self) -> str:
        return f"\n\nTraceback in the worker process:\n{self.text}"


class TaskNotFound(OffloadError, LookupError):
    """A message names a task this worker does not know."""


class TaskNotAllowed(TaskNotFound):
    """A message names a function its app does not declare: nothing was imported or run.

    A worker runs registered tasks (``@app.task``) and, for ``app.enqueue(fn)``,
    plain functions of the modules the app includes (``App(include=[...])``).
    """


class MessageRejected(OffloadError, ValueError):
    """A stored message could not be read or run as it is; nothing of it ran.

    A field was corrupt, out of range or of the wrong type (the broker's
    contents were damaged, or written by something other than offload). The
    message went to the dead-letter set, alone, with this reason.
    """


class NotSerializable(OffloadError, TypeError):
    """A value cannot be encoded by the serializer in use.

    ``path`` says where the value sits in the call (``args[1].user``,
    ``kwargs['items'][3]``) and ``type_name`` what it is; the message says
    what to pass instead.
    """

    def __init__(self, path: str, type_name: str, reason: str) -> None:
        self.path = path
        self.type_name = type_name
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[NotSerializable], tuple[object, ...]]:
        # Rebuilt from our own fields: the default (``cls(*self.args)``) would
        # fail to unpickle in the parent of a process pool.
        return (type(self), (self.path, self.type_name, self.reason))


class PayloadTooLarge(NotSerializable):
    """An encoded payload is bigger than the serializer's ``max_size`` (bytes)."""

    def __init__(self, path: str, type_name: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            path,
            type_name,
            f"encodes to {size:,} bytes, over the limit of {limit:,} bytes; store large "
            "data elsewhere (a file, object storage, a database row) and pass a reference "
            "to it (a path, a URL or an id), or raise the serializer's max_size",
        )

    def __reduce__(self) -> tuple[type[NotSerializable], tuple[object, ...]]:
        return (type(self), (self.path, self.type_name, self.size, self.limit))


class PayloadRejected(OffloadError):
    """A payload failed its signature check or could not be decoded.

    Nothing in it was trusted or run. The message says why: a tampered or
    unsigned pickle payload, a key that differs between producer and worker,
    a class the worker cannot import, or bytes that are not a payload at all.
    """


class TaskFailed(OffloadError):
    """A task failed in another process with an exception this process cannot rebuild.

    Carries what the worker recorded: the exception's type name
    (``module.QualName``), its message and its traceback as text.
    """

    def __init__(self, type_name: str, message: str, traceback: str) -> None:
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self) -> tuple[type[TaskFailed], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.traceback))

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}\n\nTraceback in the worker:\n{self.traceback}"


class BrokerUnavailable(OffloadError, ConnectionError):
    """The broker cannot be reached, after a bounded number of retries.

    A producer's call raises it rather than hang or report success for a
    message that was not stored; a worker logs it and keeps reconnecting.
    """
