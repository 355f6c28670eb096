"""Procrastinate on the benchmark's own PostgreSQL database.

``noop.defer(i=i)`` and ``noop.batch_defer({"i": i}, ...)``, through the
sync API of ``PsycopgConnector`` (``app.open()``); the schema is applied
first, on the fresh database. Procrastinate keeps finished jobs (status
``succeeded``) but stores no result: its round trip is ``defer``, then its
job's status polled every 0.5 ms until the job has ended (``POLL``), the
closest a producer can come to waiting for it.
Workers: ``procrastinate --app benchmarks.peers.procrastinate_pg.app
--log-level warning worker --concurrency 8``, one OS process each (an
asyncio loop running up to 8 jobs at once, as offload's 8 threads).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import procrastinate
import psycopg

from benchmarks.peers import base

URL = os.environ["BENCH_PG_URL"]
POLL = 0.0005  # seconds between two looks at a round trip's job status
_ENDED = frozenset({"succeeded", "failed", "cancelled", "aborted"})
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=URL))
noop = app.task(name="noop")(base.noop)


class Driver(base.Driver):
    system = "Procrastinate"
    batch_api = "task.batch_defer(...)"
    results = False
    # Its drain is 150-600 tasks/s here: the scale scenario's window is 800 tasks.
    window_share = 0.1

    def __init__(self) -> None:
        app.open()
        app.schema_manager.apply_schema()
        self._conn = psycopg.connect(URL, autocommit=True)

    def enqueue(self, i: int) -> Any:
        return noop.defer(i=i)

    def enqueue_batch(self, items: Sequence[int]) -> None:
        calls: list[dict[str, Any]] = [{"i": i} for i in items]
        noop.batch_defer(*calls)

    def fill_marked(
        self, count: int, marks: Sequence[int], *, listening: bool = False
    ) -> list[Any]:
        # As fill, keeping the job ids batch_defer returns at the marks.
        kept: dict[int, int] = {}
        for start in range(0, count, base.FILL_BATCH):
            calls: list[dict[str, Any]] = [
                {"i": i} for i in range(start, min(count, start + base.FILL_BATCH))
            ]
            ids = noop.batch_defer(*calls)
            kept.update({m: ids[m - start] for m in marks if start <= m < start + len(ids)})
        return [kept[m] for m in marks]

    def is_done(self, mark: Any) -> bool:
        status = app.job_manager.get_job_status(mark)  # one row, by primary key
        return status.value in _ENDED

    def roundtrip(self, i: int, timeout: float) -> Any:
        # No result store: the job's end, seen by polling its status.
        job_id = noop.defer(i=i)
        deadline = time.monotonic() + timeout
        while not self.is_done(job_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Procrastinate job {job_id}: not done within {timeout:g} s")
            time.sleep(POLL)
        return None

    def done_count(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        ).fetchone()
        return int(row[0]) if row else 0

    def worker_commands(self, processes: int) -> list[list[str]]:
        command = [
            str(base.BIN / "procrastinate"),
            "--app",
            f"{__name__}.app",
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            "8",
        ]
        return [command] * processes

    def close(self) -> None:
        self._conn.close()
        app.close()
