"""Drain throughput: pre-queued no-op tasks, then exactly 2 worker processes.

The queue is filled first (untimed, with the batch API where there is one),
then the clock starts as the worker commands are started, and stops when
the library's own record says every task is done (offload: succeeded jobs
in ``counts()``; Huey: stored results; RQ: the finished-job registry;
Celery: result keys in its Redis backend; Dramatiq: its queue's message
count back to zero; Procrastinate: jobs with status ``succeeded``), polled
every 20 ms. So the figure includes the workers' start-up, as a deployment
pays it; ``first done`` says how much of it that was.

Where that count scans the whole table (offload on SQLite and PostgreSQL,
Procrastinate: 8 ms a call at 20,000 rows on SQLite, a quarter of a core
at that pace, taken from the workers being measured), the poll looks up
the first and the last task queued instead (one row each, by key; the
queues are first in, first out), and counts only once the last is done,
to confirm every task is.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.peers import servers
from benchmarks.peers.base import Driver
from benchmarks.scenarios.durable import driver_for, per_backend, wait_until, worker_processes
from benchmarks.spec import Figures, Metric, Params
from benchmarks.workers import Workers

MIB = 1024 * 1024


def run(backend: servers.Backend, system: str, params: Params) -> Figures:
    """Tasks per second from the workers' start to the last one done."""
    timeout = float(params["wait_timeout"])
    with driver_for(backend, system) as driver:
        tasks = max(1, round(int(params["tasks"]) * driver.drain_share))
        marks = driver.fill_marked(tasks, (0, tasks - 1))
        if driver.done_count() != 0:
            raise RuntimeError(f"{system}: tasks done before any worker started")
        start = time.perf_counter()
        with worker_processes(driver, int(params["processes"])) as running:
            first = _until_all_done(driver, running, tasks, timeout, marks)
            elapsed = time.perf_counter() - start
            peak = running.peak_rss()
    return {
        "drain_per_s": tasks / elapsed,
        "first_done_s": first - start,
        "worker_rss_mib": peak / MIB,
    }


def _until_all_done(
    driver: Driver, running: Workers, tasks: int, timeout: float, marks: list[Any]
) -> float:
    """Wait until ``tasks`` are done; when the first one was seen done.

    ``marks`` (the first and the last task queued, if the library can look
    one up) spare polling the done count until the last task is done.
    """
    first: list[float] = []

    def all_done() -> bool:
        running.check()  # a crashed worker fails the round instead of stalling it
        if marks:
            if not first and driver.is_done(marks[0]):
                first.append(time.perf_counter())
            if not driver.is_done(marks[-1]):
                return False
        done = driver.done_count()
        if done and not first:
            first.append(time.perf_counter())
        return done >= tasks

    wait_until(all_done, timeout, f"{driver.system} draining {tasks} tasks")
    return first[0]


SCENARIOS = per_backend(
    "drain",
    "Drain throughput, no-op tasks queued before 2 worker processes start",
    (
        Metric("drain_per_s", "drain, 2 worker processes", "tasks/s", better="higher"),
        Metric("first_done_s", "workers' start to first task done", "s"),
        Metric("worker_rss_mib", "peak RSS of the largest worker process", "MiB"),
    ),
    run,
    notes={"redis": "RQ drains a tenth of the tasks: a fork per job"},
    full={"tasks": 20_000, "processes": 2, "wait_timeout": 300.0},
    quick={"tasks": 1_000, "processes": 2, "wait_timeout": 60.0},
    timeout=420.0,
    quick_timeout=90.0,
)
