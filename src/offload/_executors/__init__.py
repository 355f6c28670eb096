"""Where a call runs: threads, child processes, or an event loop.

An executor takes a ``Call`` and a ``done(call, result, error)`` callback,
runs the call, and reports back exactly once. It decides nothing about
retries or outcomes; that is the runner's job.
"""

from __future__ import annotations

from ._base import CANCEL_GRACE, Done, Executor, Start
from ._thread import ThreadExecutor, check_size

# ProcessExecutor (._process) and AsyncExecutor (._async) are imported where
# first needed: multiprocessing and asyncio cost tens of milliseconds.
__all__ = ["CANCEL_GRACE", "Done", "Executor", "Start", "ThreadExecutor", "check_size"]
