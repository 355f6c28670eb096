"""Three `offload worker` processes, each with its scheduler, on one 1-second schedule.

On each durable broker (SQLite, Redis, PostgreSQL): every tick of at least
12 is enqueued once and runs once, though three schedulers race for each.
The figures (ticks, runs, runs per tick) are printed (``pytest -s``).
"""

from __future__ import annotations

import collections
import itertools
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from helpers import TESTS, wait_until
from offload._app import App

TICKS = 12
WAIT = 120.0  # real seconds: generous for a loaded 2-core machine


def runs(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(job, pid) for job, pid in (line.split() for line in lines if line.strip())]


def start_workers(db_url: str, ticks: Path, tmp_path: Path, n: int) -> list[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "OFFLOAD_TEST_URL": db_url,
        "OFFLOAD_TEST_TICKS": str(ticks),
        "PYTHONPATH": str(TESTS),
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "offload", "worker", "periodic_tasks:app", "-c", "2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for _ in range(n)
    ]


def test_three_workers_run_each_tick_exactly_once(db_url: str, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.txt"
    workers = start_workers(db_url, ticks, tmp_path, 3)
    try:
        ran = wait_until(lambda: len({job for job, _ in runs(ticks)}) >= TICKS, WAIT)
        assert all(worker.poll() is None for worker in workers), "a worker exited early"
        assert ran, f"fewer than {TICKS} ticks ran in {WAIT:g} s"
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    per_job = collections.Counter(job for job, _ in runs(ticks))
    app = App(db_url, name="ticks-check")
    try:
        keys = {job: app.inspector.job(job) for job in per_job}
    finally:
        app.shutdown(wait=False)
    fires = sorted(
        datetime.fromisoformat(info.key.removeprefix(f"periodic:{info.task}:")).timestamp()
        for info in keys.values()
        if info is not None and info.key is not None
    )
    assert len(fires) == len(per_job), "every run is a tick's job (key periodic:...)"
    assert len(set(fires)) == len(fires), "no tick enqueued twice"
    assert [b - a for a, b in itertools.pairwise(fires)] == [1.0] * (len(fires) - 1), "no tick lost"
    assert set(per_job.values()) == {1}, f"a tick ran more than once: {per_job.most_common(3)}"
    runners = {pid for _, pid in runs(ticks)}
    # Which scheduler recorded each tick (won the compare-and-set): all three compete.
    recorded = [output.count("enqueued as job") for output in outputs]
    scheme = db_url.split(":", 1)[0]
    print(
        f"\n{scheme}: 3 workers (each with a scheduler), {len(fires)} ticks, "
        f"{sum(per_job.values())} runs, {sum(per_job.values()) / len(fires):.2f} runs per tick; "
        f"ticks recorded per scheduler {recorded}; run by {len(runners)} worker process(es)"
    )
    assert all("Traceback" not in output for output in outputs), outputs


def test_offload_scheduler_alone_feeds_workers_without_one(tmp_path: Path) -> None:
    """`offload worker --no-scheduler` runs ticks only when `offload scheduler` sends them."""
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    ticks = tmp_path / "ticks.txt"
    env = {
        **os.environ,
        "OFFLOAD_TEST_URL": db_url,
        "OFFLOAD_TEST_TICKS": str(ticks),
        "PYTHONPATH": str(TESTS),
    }

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "offload", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    worker = start("worker", "periodic_tasks:app", "--no-scheduler")
    scheduler = start("scheduler", "periodic_tasks:app")
    try:
        assert wait_until(lambda: len(runs(ticks)) >= 3, WAIT), "no ticks from offload scheduler"
    finally:
        for process in (scheduler, worker):
            os.killpg(process.pid, signal.SIGTERM)
        scheduler_log = scheduler.communicate(timeout=60)[0]
        worker_log = worker.communicate(timeout=60)[0]
    assert {pid for _, pid in runs(ticks)} == {str(worker.pid)}
    assert "enqueued as job" in scheduler_log and "enqueued as job" not in worker_log
    listing = subprocess.run(
        [sys.executable, "-m", "offload", "schedules", "--app", "periodic_tasks:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    header, row = listing.splitlines()
    assert header.split() == [
        "TASK",
        "SCHEDULE",
        "MISSED",
        "LAST",
        "FIRE",
        "LAST",
        "RUN",
        "NEXT",
        "FIRE",
    ]
    assert row.split()[:5] == ["periodic_tasks.beat", "every", "1s", "all", row.split()[4]]
    print("\n" + listing)
    last_fire, last_run, next_fire = row.split()[4:]
    assert last_fire.endswith("+00:00") and next_fire > last_fire
    # The last tick may not have run yet: the worker was stopped meanwhile.
    assert last_run in {"succeeded", "queued", "running"}
