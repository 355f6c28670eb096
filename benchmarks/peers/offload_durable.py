"""offload in durable mode, on SQLite, Redis or PostgreSQL.

Producer: ``offload.App(url)``, ``@app.task``; one call per task, or
``task.map(...)`` (one batch, one transaction). Workers: ``offload worker
benchmarks.peers.offload_durable:app --pool thread --concurrency 8
--log-level WARNING``, one OS process each.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import offload
from benchmarks.peers import base, servers
from offload import State

# 8, as every peer's workers; BENCH_WORKER_CONCURRENCY=N measures offload's at
# N threads instead (benchmarks/README.md, "Worker threads").
CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY") or 8)
_ENDED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})


def _url() -> str:
    backend = os.environ.get("BENCH_BACKEND", "sqlite")
    if backend == "redis":
        return os.environ["BENCH_REDIS_URL"]
    if backend == "postgres":
        return os.environ["BENCH_PG_URL"]
    # Four slashes: an absolute path. The sqlite-full rows set synchronous=full
    # (Huey's default) to compare on equal terms; the others keep offload's NORMAL.
    synchronous = os.environ.get("BENCH_SQLITE_SYNCHRONOUS")
    query = f"?synchronous={synchronous}" if synchronous else ""
    return "sqlite:///" + servers.sqlite_path("offload.db") + query


def _app() -> offload.App:
    url = _url()
    # SQLite takes no namespace (one app per file); the servers get one, as
    # apps sharing a server would.
    namespace = None if url.startswith("sqlite") else "bench"
    return offload.App(url, namespace=namespace, name="bench")


app = _app()
# What a limit check costs per task (README, "The cost of a limit"): the no-op
# gets limits that never bind, e.g. BENCH_OFFLOAD_RATE_LIMIT=1000000/s or
# BENCH_OFFLOAD_CONCURRENCY=1000000; unset, none (the figures of every table).
noop = app.task(
    name="bench.noop",
    rate_limit=os.environ.get("BENCH_OFFLOAD_RATE_LIMIT") or None,
    concurrency=int(os.environ.get("BENCH_OFFLOAD_CONCURRENCY") or 0) or None,
)(base.noop)


class Driver(base.Driver):
    system = "offload"
    batch_api = "task.map(items)"

    def enqueue(self, i: int) -> Any:
        return noop(i)

    def enqueue_batch(self, items: Sequence[int]) -> None:
        noop.map(items)

    def fill_marked(
        self, count: int, marks: Sequence[int], *, listening: bool = False
    ) -> list[Any]:
        # As fill, keeping the handles at the marks (the others are dropped).
        # While it holds handles, the producer listens for its jobs' ends (Redis,
        # PostgreSQL), and the jobs it queues meanwhile carry its reply channel:
        # their acks send it news (on PostgreSQL a NOTIFY, whose commits take
        # turns). Left to the watcher's thread, the listening begins during the
        # first batches, at a point that varies: in the scale scenario's window
        # (tasks 200 to 8,200), the tasks from the second batch on carried the
        # channel in 1 fill of 10k out of 3, and in both fills of 1M looked at.
        # listening: the first task goes alone, and a moment's wait on its
        # result has the producer listen before the rest are queued.
        kept: dict[int, Any] = {}
        if listening:
            first = kept[0] = noop.map([0])[0]  # kept: its handle keeps the producer listening
            with contextlib.suppress(offload.ResultTimeout):
                first.result(timeout=0.2)
        for start in range(len(kept), count, base.FILL_BATCH):
            handles = noop.map(range(start, min(count, start + base.FILL_BATCH)))
            kept.update({m: handles[m - start] for m in marks if start <= m < start + len(handles)})
        return [kept[m] for m in marks]

    def is_done(self, mark: Any) -> bool:
        return bool(mark.state in _ENDED)  # Handle.state: the broker's record, by id

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.result(timeout)

    def done_count(self) -> int:
        counts = app.inspector.counts()
        return sum(states.get(State.SUCCEEDED, 0) for states in counts.values())

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [
            str(base.BIN / "offload"),
            "worker",
            f"{__name__}:app",
            "--pool",
            "thread",
            "--concurrency",
            str(CONCURRENCY),
            "--log-level",
            "WARNING",
        ]
        return [command] * processes

    def close(self) -> None:
        app.shutdown(wait=False)
