"""What a durable system's driver offers the scenarios.

A driver module builds its library's app (or broker, or queue) at import
time from the environment that ``servers.prepare`` set, declares the no-op
task on it, and defines a ``Driver``. The same module is what the worker
command imports, so producer and workers agree on names and settings.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

# The peers' venv's bin directory: the console scripts each library installs
# (`celery`, `huey_consumer`, `rq`, ...) are its recommended worker commands.
BIN = Path(sys.executable).parent
# Tasks per batch call when a queue is filled before a drain.
FILL_BATCH = 5_000


def noop(i: int) -> int:
    """The task: nothing but returning its argument.

    It returns a value (not None) so that every library records a result the
    way it does by default (Huey stores no result for None), which is also
    how the drain scenario sees that a task is done.
    """
    return i


class Driver(ABC):
    """One system on one backend, through its normal public API."""

    system: ClassVar[str]
    """Its column in the table."""
    batch_api: ClassVar[str | None] = None
    """The library's call that stores many tasks at once, if it has one."""
    results: ClassVar[bool] = True
    """Whether it hands a task's result back to the producer."""
    drain_share: ClassVar[float] = 1.0
    """The share of the drain scenario's tasks this system drains (a rate is a
    rate; a system that needs minutes for the full count gets fewer)."""
    window_share: ClassVar[float | None] = None
    """The share of the scale scenario's window (and lead) this system runs;
    None: its ``drain_share``. Below ~1,000 tasks/s, 8,000 would take 10 s+."""
    roundtrip_share: ClassVar[float] = 1.0
    """The share of the round trip scenario's round trips this system times
    (a system whose round trip takes half a second gets fewer)."""

    @abstractmethod
    def enqueue(self, i: int) -> Any:
        """Enqueue ``noop(i)`` with one call; what the library returns for it."""

    def enqueue_each(self, items: Sequence[int]) -> None:
        """Enqueue ``noop(i)`` for every item, one call each, dropping what each returns.

        A plain loop over ``enqueue``; an asyncio library runs the loop as one
        coroutine (``await`` per call), as its users do.
        """
        enqueue = self.enqueue  # a local: the loop measures the library
        for i in items:
            enqueue(i)

    def enqueue_batch(self, items: Sequence[int]) -> None:
        """Enqueue ``noop(i)`` for every item with the library's batch API."""
        raise NotImplementedError(f"{self.system} has no batch enqueue")

    def fill(self, count: int) -> None:
        """Queue ``count`` tasks before a drain, the fastest way the library has."""
        if self.batch_api is not None:
            for start in range(0, count, FILL_BATCH):
                self.enqueue_batch(range(start, min(count, start + FILL_BATCH)))
        else:
            self.enqueue_each(range(count))

    def fill_marked(
        self, count: int, marks: Sequence[int], *, listening: bool = False
    ) -> list[Any]:
        """Queue ``count`` tasks as ``fill`` does; what identifies the tasks at ``marks``.

        ``marks`` are positions in the queue (0 is the first task queued), for
        ``is_done``. A library whose done count scans its whole table (offload
        on SQLite and PostgreSQL, Procrastinate) would load the very store its
        workers use if that count were polled with a million tasks queued;
        one task's state, looked up by its key, costs the same at any depth.
        ``[]`` (the default) means: no such lookup, poll ``done_count``.
        ``listening``: a library whose producer hears of its jobs' ends (offload
        on Redis and PostgreSQL) listens before the second task is queued, so
        that every task after the first carries its reply channel, whatever
        the count (see offload_durable); the others ignore it.
        """
        self.fill(count)
        return []

    def is_done(self, mark: Any) -> bool:
        """Whether the task ``fill_marked`` returned ``mark`` for has finished (one lookup)."""
        raise NotImplementedError(f"{self.system} has no per-task lookup")

    def result(self, handle: Any, timeout: float) -> Any:
        """Block (at most ``timeout`` s) for the result of what ``enqueue`` returned."""
        raise NotImplementedError(f"{self.system} returns no results")

    def roundtrip(self, i: int, timeout: float) -> Any:
        """Enqueue ``noop(i)`` and block (at most ``timeout`` s) for its result."""
        return self.result(self.enqueue(i), timeout)

    @abstractmethod
    def done_count(self) -> int:
        """How many tasks the library has recorded as finished (cheap: polled)."""

    @abstractmethod
    def worker_commands(self, processes: int) -> list[list[str]]:
        """The commands that run ``processes`` worker processes, one OS process each
        command (plus whatever helper processes the library adds, e.g. a parent)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
