"""One log line per finished job, with its fields as structured ``extra=``.

At INFO a worker says how each job ended: task, id, queue, attempt, state
and duration. A retry is a WARNING and a final failure an ERROR, both with
the traceback. The caller checks ``ENABLED()`` once per job (one cached
lookup) and builds nothing when INFO is off: the benchmark's WARNING
setting pays one branch.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from ._message import Delivery, State

log = logging.getLogger(__name__)
"""Its own logger: ``logging.getLogger("offload._joblog").setLevel(WARNING)`` quiets these alone."""


def job_fields(delivery: Delivery) -> dict[str, Any]:
    """The ``extra=`` fields of every log record about one job (for JSON or structured logs)."""
    message = delivery.message
    return {
        "job_id": message.id,
        "task": message.task,
        "attempt": delivery.attempt,
        "queue": message.queue,
    }


info_enabled: Callable[[], bool] = functools.partial(log.isEnabledFor, logging.INFO)
"""Whether per-job INFO lines are wanted now (cached by ``logging``: cheap). A partial,
not a function: every call runs this, and a partial is one Python call fewer."""


def finished(
    delivery: Delivery,
    state: State,
    started: float | None,
    error: BaseException | None = None,
    retry_in: float | None = None,
) -> None:
    """Log how one attempt ended; ``started``: its ``time.perf_counter()`` at start, if known."""
    level = _level(state, error)
    if not log.isEnabledFor(level):
        return
    duration = None if started is None else time.perf_counter() - started
    fields = job_fields(delivery)
    fields["state"] = state.value
    fields["duration"] = None if duration is None else round(duration, 6)
    message = delivery.message
    took = "" if duration is None else f" in {duration:.3f}s"
    text = "Task %s (id %s, queue %s, attempt %d) %s%s"
    args: tuple[Any, ...] = (message.task, message.id, message.queue, delivery.attempt)
    if retry_in is not None:
        fields["retry_in"] = retry_in
        text += ", retrying in %.3gs: %r"
        args = (*args, "failed", took, retry_in, error)
    elif error is not None:
        text += ", no retries left: %r"
        args = (*args, state.value, took, error)
    else:
        args = (*args, state.value, took)
    exc_info = None if error is None else (type(error), error, error.__traceback__)
    log.log(level, text, *args, exc_info=exc_info, extra=fields)


def _level(state: State, error: BaseException | None) -> int:
    if error is None:
        return logging.INFO
    return logging.WARNING if state is State.RETRYING else logging.ERROR
