"""Issue-sized runs: four worker processes, thousands of tasks, a crash, a late start."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import TESTS, wait_until
from offload import State

WAIT = 120.0
StartWorker = Callable[..., "subprocess.Popen[str]"]


def done_ids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_four_workers_drain_2000_tasks_each_done_at_least_once(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    ids = [str(i) for i in range(2000)]
    handles = tasks.record.map([str(out)] * len(ids), ids)  # one batch, one transaction
    workers = [start_worker("-c", "4") for _ in range(4)]
    assert wait_until(lambda: len(set(done_ids(out))) == len(ids), WAIT), "not every id ran"
    assert set(done_ids(out)) == set(ids)
    assert all(h.result(timeout=WAIT) for h in handles[:10])
    assert all(worker.poll() is None for worker in workers)


def test_sigkill_of_workers_mid_run_loses_nothing_and_repeats_only_what_they_held(
    db_url: str, tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Kill a worker twice among four, with full accounting of 2000 jobs.

    Lost: a job the broker does not say succeeded, or whose function never
    ran. Duplicates: runs beyond the first (each run appends its id to a
    file). At least once means a killed worker may repeat only what it held:
    at most ``concurrency`` jobs per kill.
    """
    out = tmp_path / "done.txt"
    ids = [str(i) for i in range(2000)]
    concurrency, kills = 4, 2
    handles = tasks.slow_record.map([str(out)] * len(ids), ids, [0.002] * len(ids))
    job_ids = [handle.id for handle in handles]
    options = ("-c", str(concurrency), "--lease", "2")
    workers = [start_worker(*options) for _ in range(4)]
    for kill in range(1, kills + 1):
        done = 500 * kill  # a quarter, then half of the jobs
        assert wait_until(lambda done=done: len(done_ids(out)) >= done, WAIT), "no progress"
        victim = workers.pop(0)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        workers.append(start_worker(*options))  # the restart
    broker = tasks.app.broker
    everything_succeeded = poll_until(
        lambda: set(broker.inspector.job_states(job_ids).values()) == {State.SUCCEEDED}, WAIT
    )
    states = broker.inspector.job_states(job_ids)
    runs = collections.Counter(done_ids(out))
    lost = sum(
        states.get(job_id) is not State.SUCCEEDED or runs[value] == 0
        for job_id, value in zip(job_ids, ids, strict=True)
    )
    duplicates = sum(count - 1 for count in runs.values())
    bound = concurrency * kills
    figures = (
        f"kill test, {db_url.partition(':')[0]}: {len(ids)} jobs, {kills} workers killed "
        f"(concurrency {concurrency}): lost={lost} duplicates={duplicates} bound={bound}"
    )
    print(figures)
    assert everything_succeeded and lost == 0, (
        f"{figures}; states: {collections.Counter(states.values())}"
    )
    assert duplicates <= bound, f"{figures}; most run: {runs.most_common(8)}"
    assert all(worker.poll() is None for worker in workers), "the other workers still run"


def poll_until(predicate: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    """``wait_until`` at a pace a query of thousands of jobs can keep."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True


def test_tasks_enqueued_with_no_worker_run_when_one_starts_later(
    db_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    producer = (
        "import sys, durable_tasks\n"
        "for i in range(100):\n"
        "    durable_tasks.record(sys.argv[1], str(i))\n"
    )
    env = {**os.environ, "OFFLOAD_TEST_URL": db_url, "PYTHONPATH": str(TESTS)}
    subprocess.run(
        [sys.executable, "-c", producer, str(out)], check=True, env=env, timeout=60
    )  # the producer has ended: only the database holds the work
    assert not out.exists()
    start_worker()
    assert wait_until(lambda: sorted(done_ids(out), key=int) == [str(i) for i in range(100)], WAIT)
