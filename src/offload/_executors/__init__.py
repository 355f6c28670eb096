"""Where a call runs: threads, child processes, or an event loop.

An executor takes a ``Call`` and a ``done(call, result, error)`` callback,
runs the call, and reports back exactly once. It decides nothing about
retries or outcomes; that is the runner's job.
"""

from __future__ import annotations

from ._async import AsyncExecutor
from ._base import Done, Executor
from ._process import ProcessExecutor
from ._thread import ThreadExecutor

__all__ = ["AsyncExecutor", "Done", "Executor", "ProcessExecutor", "ThreadExecutor"]
