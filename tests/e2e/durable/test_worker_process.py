"""Real `offload worker` processes: results across processes, crashes, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import offload
from helpers import wait_until
from offload import State

WAIT = 30.0
StartWorker = Callable[..., "subprocess.Popen[str]"]


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_worker_process_runs_calls_and_results_come_back(
    tasks: Any, start_worker: StartWorker
) -> None:
    start_worker("--concurrency", "4")
    handles = tasks.add.map(range(50), range(50))
    assert [h.result(timeout=WAIT) for h in handles] == [2 * i for i in range(50)]
    assert tasks.pid().result(timeout=WAIT) != os.getpid()
    assert tasks.swap(tasks.Point(1, 2)).result(timeout=WAIT) == tasks.Point(2, 1)
    assert tasks.app.enqueue(tasks.plain, 4).result(timeout=WAIT) == 40


def test_errors_come_back_with_their_type_or_as_task_failed(
    tasks: Any, start_worker: StartWorker
) -> None:
    start_worker()
    with pytest.raises(ValueError, match="boom") as caught:
        tasks.fail("boom").result(timeout=WAIT)
    assert "in fail" in str(caught.value.__cause__)  # the worker's traceback
    with pytest.raises(tasks.LocalError, match="local"):
        tasks.fail_locally("local").result(timeout=WAIT)


def test_retries_wait_in_the_broker_and_succeed(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker()
    handle = tasks.flaky(str(tmp_path / "marks"))
    assert handle.result(timeout=WAIT) == 3
    assert tasks.app.job(handle.id).attempt == 3


def test_an_unknown_task_is_dead_lettered_and_the_worker_keeps_going(
    tasks: Any, db_url: str, start_worker: StartWorker
) -> None:
    worker = start_worker()
    producer = offload.App(db_url, name="producer")
    try:
        ghost = producer.task(name="nowhere.ghost")(_ghost)
        handle = ghost()
        with pytest.raises(offload.OffloadError) as caught:
            handle.result(timeout=WAIT)
        assert "nowhere" in str(caught.value)
        assert "durable_tasks.add" in str(caught.value)  # the names it does know
        assert producer.inspector.job(handle.id).state is State.FAILED  # type: ignore[union-attr]
        assert tasks.add(1, 2).result(timeout=WAIT) == 3
        assert worker.poll() is None
    finally:
        producer.shutdown(wait=False)


def _ghost() -> None:
    """Registered only in the producer: the worker cannot import it by its name."""


def test_sigkill_mid_run_loses_nothing(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    victim = start_worker("--concurrency", "4", "--lease", "2")
    handles = [tasks.slow_record(str(out), str(i), 0.05) for i in range(60)]
    assert wait_until(lambda: len(lines(out)) >= 8, WAIT), "the worker never started"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    start_worker("--concurrency", "4", "--lease", "2")
    results = [h.result(timeout=WAIT) for h in handles]
    assert results == [str(i) for i in range(60)]
    done = lines(out)
    assert set(done) == {str(i) for i in range(60)}  # every task ran
    # At least once: a task the victim was running may have run twice.
    assert len(done) - 60 <= 4


def test_sigterm_lets_running_tasks_finish_and_exits_zero(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    worker = start_worker("--concurrency", "2", "--grace", "10", "--log-level", "INFO")
    handles = [tasks.slow_record(str(out), str(i), 1.0) for i in range(2)]
    assert wait_until(
        lambda: all(tasks.app.job(h.id).state is State.RUNNING for h in handles), WAIT
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(WAIT) == 0
    assert sorted(lines(out)) == ["0", "1"], "running tasks finished within the grace"
    log = worker.stdout.read() if worker.stdout else ""
    assert "stopping" in log


def test_sigterm_releases_what_does_not_finish_within_the_grace(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    worker = start_worker("--concurrency", "1", "--grace", "0.2")
    handle = tasks.slow_record(str(out), "late", 3.0)
    assert wait_until(lambda: tasks.app.job(handle.id).state is State.RUNNING, WAIT)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(WAIT) == 0
    job = tasks.app.job(handle.id)
    assert job.state is State.QUEUED, "released for another worker"
    assert job.attempt == 0, "a release does not count as an attempt"
    start_worker()
    assert handle.result(timeout=WAIT) == "late"


def test_a_second_signal_exits_at_once(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = start_worker("--grace", "60")
    handle = tasks.slow_record(str(tmp_path / "out"), "x", 30.0)
    # Running in the worker, not only claimed: a signal between the claim's
    # commit and the hand-over releases the job, and the drain ends at once.
    # The worker's registry entry lists what it runs (every beat, 2 s).
    assert wait_until(
        lambda: any(handle.id in w.running for w in tasks.app.inspector.workers()), WAIT
    )
    worker.send_signal(signal.SIGINT)
    # Again until it ends: a signal that comes before the worker has handled
    # the first (a loaded machine may take a while to run its handler) only
    # repeats the first. The task sleeps 30 s under a 60 s grace, so ending
    # within 10 s is the signal's default action, not a drain.
    deadline = time.monotonic() + 10
    while worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
        worker.send_signal(signal.SIGINT)
    assert worker.wait(1) == -signal.SIGINT
