"""Issue-sized runs: four worker processes, thousands of tasks, a crash, a late start."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import wait_until

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


def test_sigkill_of_one_of_four_workers_loses_no_id(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    ids = [str(i) for i in range(2000)]
    concurrency = 4
    tasks.slow_record.map([str(out)] * len(ids), ids, [0.002] * len(ids))
    victim = start_worker("-c", str(concurrency), "--lease", "2")
    for _ in range(3):
        start_worker("-c", str(concurrency), "--lease", "2")
    assert wait_until(lambda: len(done_ids(out)) >= 400, WAIT)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    start_worker("-c", str(concurrency), "--lease", "2")  # the restart
    assert wait_until(lambda: set(done_ids(out)) == set(ids), WAIT), "an id was lost"
    counts = collections.Counter(done_ids(out))
    duplicates = sum(n - 1 for n in counts.values())
    # At least once: only what the killed worker held may have run twice.
    assert duplicates <= concurrency, f"{duplicates} duplicates: {counts.most_common(8)}"


def test_tasks_enqueued_with_no_worker_run_when_one_starts_later(
    db_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    producer = (
        "import sys, durable_tasks\n"
        "for i in range(100):\n"
        "    durable_tasks.record(sys.argv[1], str(i))\n"
    )
    env = {**os.environ, "OFFLOAD_TEST_URL": db_url, "PYTHONPATH": str(Path(__file__).parents[1])}
    subprocess.run(
        [sys.executable, "-c", producer, str(out)], check=True, env=env, timeout=60
    )  # the producer has ended: only the database holds the work
    assert not out.exists()
    start_worker()
    assert wait_until(lambda: sorted(done_ids(out), key=int) == [str(i) for i in range(100)], WAIT)
