"""offload: run Python functions in the background.

>>> import offload
>>> @offload.task
... def work(x: int) -> int:
...     return x * 2
>>> work(21).result()
42

Everything public is listed in ``__all__``; modules whose names start
with an underscore are private.
"""

from __future__ import annotations

from ._app import App
from ._context import JobContext, NoCurrentJob, current, step
from ._default import default_app, shutdown, task
from ._errors import (
    BrokerUnavailable,
    Cancelled,
    ConfigurationError,
    MessageRejected,
    NotSerializable,
    OffloadError,
    PayloadRejected,
    PayloadTooLarge,
    RemoteTraceback,
    ResultTimeout,
    Retry,
    TaskCancelled,
    TaskFailed,
    TaskNotAllowed,
    TaskNotFound,
    TaskNotImportable,
    TaskTimeout,
    WorkerLost,
)
from ._handle import Handle
from ._limits import RateLimit
from ._message import Message, Outcome, Progress, State
from ._middleware import Delay, Middleware
from ._retry import Backoff
from ._schedule import Missed, Schedule
from ._signature import Signature
from ._task import Task, TaskCall
from ._waiting import as_completed, gather, wait
from ._workflows import Workflow, WorkflowHandle, chain, chord, group

__version__ = "0.1.0"

__all__ = [
    "App",
    "Backoff",
    "BrokerUnavailable",
    "Cancelled",
    "ConfigurationError",
    "Delay",
    "Handle",
    "JobContext",
    "Message",
    "MessageRejected",
    "Middleware",
    "Missed",
    "NoCurrentJob",
    "NotSerializable",
    "OffloadError",
    "Outcome",
    "PayloadRejected",
    "PayloadTooLarge",
    "Progress",
    "RateLimit",
    "RemoteTraceback",
    "ResultTimeout",
    "Retry",
    "Schedule",
    "Signature",
    "State",
    "Task",
    "TaskCall",
    "TaskCancelled",
    "TaskFailed",
    "TaskNotAllowed",
    "TaskNotFound",
    "TaskNotImportable",
    "TaskTimeout",
    "WorkerLost",
    "Workflow",
    "WorkflowHandle",
    "__version__",
    "as_completed",
    "chain",
    "chord",
    "current",
    "default_app",
    "gather",
    "group",
    "shutdown",
    "step",
    "task",
    "wait",
]
