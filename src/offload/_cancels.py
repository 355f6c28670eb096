"""Stopping running calls that someone cancelled.

A request reaches a worker two ways: from its lease heartbeat, when the
broker answers a renewal with ``Lease.CANCEL`` (``offload cancel``, or
``handle.cancel()`` in another process), or, in-process, straight from the
handle. Then the call's job context says so (``offload.current().cancelled``)
and its executor stops it where it can: an ``async def`` task is cancelled,
a process-pool task interrupted and, after a grace, its process killed. A
thread cannot be stopped: its job is recorded cancelled at once, its handle
settled, and the function runs on until it checks or returns, its slot
taken until then; its late outcome is refused by the broker (fencing).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from ._context import request_cancel
from ._executors import CANCEL_GRACE, Executor
from ._handle import Handle
from ._joblog import job_fields
from ._message import Delivery
from ._runner import Call, Runner

log = logging.getLogger(__name__)


class Cancels:
    """The running calls of one worker, by fencing token, and how to stop each."""

    WAIT = CANCEL_GRACE + 2.0
    """Seconds ``handle.cancel()`` waits for a stopped call to end (a process is killed
    after ``CANCEL_GRACE``)."""

    def __init__(
        self, runner: Runner, executor_of: Callable[[Call], Executor], settled: set[int]
    ) -> None:
        self._runner = runner
        self._executor_of = executor_of
        self._settled = settled  # the leases' tokens not to renew (Leases.settled)
        self.calls: dict[int, Call] = {}  # written by the worker as calls start and end

    def requested(self, delivery: Delivery) -> None:
        """The broker says someone cancelled ``delivery``'s job (the heartbeat's answer)."""
        call = self.calls.get(delivery.token)
        if call is not None:
            self.stop(call)

    def handle_cancelled(self, handle: Handle[Any]) -> bool:
        """``handle.cancel()`` of a call running here: stop it and wait (boundedly) for
        it to end; whether it ended cancelled (it may have finished first)."""
        for call in list(self.calls.values()):
            if call.delivery.message.id == handle.id:
                self.stop(call)
                concurrent.futures.wait([handle], timeout=self.WAIT)
                break
        return handle.cancelled()

    def stop(self, call: Call) -> None:
        if not request_cancel(call.job):
            return  # asked before
        if self._executor_of(call).interrupt(call):
            return  # it ends soon, and its outcome is recorded cancelled (Runner.finish)
        self._settled.add(call.delivery.token)  # recorded now: no lease to renew meanwhile
        self._runner.cancelled(call)
        log.warning(
            "Job %s (task %s) was cancelled while it runs on a thread, which cannot be "
            "stopped: it is recorded cancelled, and its function runs on until it returns "
            "or calls offload.current().check_cancelled()",
            call.delivery.message.id,
            call.spec.name,
            extra=job_fields(call.delivery),
        )
