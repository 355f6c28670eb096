"""Worker processes whose slots are all taken: each finished call claims its successor.

On a broker with ``AckAndClaim`` (SQLite, Redis, PostgreSQL) that claim rides the
ack; on the others it follows it. Either way: every job runs exactly once
when nothing crashes, and a SIGTERM drain in the middle of it gives back
what was claimed but not started, losing nothing and running nothing twice.
"""

from __future__ import annotations

import collections
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import wait_until
from offload import State

WAIT = 120.0
StartWorker = Callable[..., "subprocess.Popen[str]"]


def runs(path: Path) -> collections.Counter[str]:
    return collections.Counter(path.read_text().split() if path.exists() else [])


def test_two_full_workers_run_every_job_exactly_once(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    ids = [str(i) for i in range(1500)]
    handles = tasks.record.map([str(out)] * len(ids), ids)
    workers = [start_worker("-c", "4") for _ in range(2)]
    assert wait_until(lambda: sum(runs(out).values()) >= len(ids), WAIT), "not every id ran"
    assert all(h.result(timeout=WAIT) == value for h, value in zip(handles, ids, strict=True))
    counted = runs(out)
    assert set(counted) == set(ids)
    assert counted.most_common(1)[0][1] == 1, f"ran twice: {counted.most_common(5)}"
    assert all(worker.poll() is None for worker in workers)


def test_sigterm_mid_drain_gives_back_what_did_not_start(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "done.txt"
    ids = [str(i) for i in range(400)]
    handles = tasks.slow_record.map([str(out)] * len(ids), ids, [0.01] * len(ids))
    job_ids = [h.id for h in handles]
    workers = [start_worker("-c", "4", "--grace", "10") for _ in range(2)]
    # Both registered, so both have their signal handlers: on a busy machine the
    # first could run 80 jobs while the second still imports (SIGTERM kills it).
    pids = {worker.pid for worker in workers}
    registered = lambda: pids <= {w.pid for w in tasks.app.inspector.workers()}  # noqa: E731
    assert wait_until(registered, WAIT), "the workers did not start"
    assert wait_until(lambda: sum(runs(out).values()) >= 80, WAIT), "no progress"
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    assert [worker.wait(WAIT) for worker in workers] == [0, 0]
    inspector = tasks.app.broker.inspector
    states = inspector.job_states(job_ids)
    assert State.RUNNING not in states.values(), "a drained worker leaves nothing running"
    ran = runs(out)
    assert ran and ran.most_common(1)[0][1] == 1, f"ran twice: {ran.most_common(5)}"
    for job_id, value in zip(job_ids, ids, strict=True):
        if states[job_id] is State.SUCCEEDED:
            assert ran[value] == 1, f"{value} succeeded without running"
        else:
            assert states[job_id] is State.QUEUED and ran[value] == 0
            job = inspector.job(job_id)
            assert job is not None and job.attempt == 0, "given back as never claimed"
    assert len(ran) < len(ids), "the drain stopped the run before its end"
    start_worker("-c", "4")  # another worker runs what was given back
    assert wait_until(lambda: sum(runs(out).values()) >= len(ids), WAIT)
    final = runs(out)
    assert set(final) == set(ids)
    assert final.most_common(1)[0][1] == 1, f"ran twice: {final.most_common(5)}"
