"""Workflows on SQLite, Redis and PostgreSQL, run by real `offload worker` processes.

The last test: a chord of 1,000 members completes with one callback while
workers are SIGKILLed. Four `offload worker` processes (4 threads each,
2-second leases) run the members; two of them are killed with SIGKILL
mid-run. Every member run leaves its index in a file, every callback run a
line in another. Counted: callbacks run (exactly 1), members lost (0: each
index is there), members run twice (at-least-once: at most what the killed
workers held, 4 each).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import offload
from helpers import TESTS

WAIT = 60.0


@pytest.fixture
def flows(db_url: str) -> Iterator[Any]:
    """tests/workflow_tasks.py, its app on ``db_url``."""
    sys.modules.pop("workflow_tasks", None)
    import workflow_tasks

    yield workflow_tasks
    module = sys.modules.pop("workflow_tasks", None)
    if module is not None:
        module.app.shutdown(wait=False)


@pytest.fixture
def start(db_url: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``offload worker workflow_tasks:app`` processes; all killed after the test."""
    started: list[subprocess.Popen[str]] = []

    def run(*options: str) -> subprocess.Popen[str]:
        env = {**os.environ, "OFFLOAD_TEST_URL": db_url, "PYTHONPATH": str(TESTS)}
        process = subprocess.Popen(
            [sys.executable, "-m", "offload", "worker", "workflow_tasks:app", *options],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait(10)


def test_chain_group_chord_and_depends_on_across_processes(
    flows: Any, start: Callable[..., subprocess.Popen[str]]
) -> None:
    add, total = flows.add, flows.total
    chained = offload.chain(add.s(1, 2), add.s(10), add.s(100)).delay()
    grouped = offload.group(add.s(i, i) for i in range(10)).delay()
    chord = offload.chord((add.s(i, 1) for i in range(5)), total.s()).delay()
    first = add(20, 1)
    after = total.options(depends_on=[first, chained])([1, 2])
    squared = offload.chain(flows.square.s(3), flows.square.s()).delay()
    start("--concurrency", "4")
    assert chained.result(timeout=WAIT) == 113
    assert grouped.result(timeout=WAIT) == [2 * i for i in range(10)]
    assert chord.result(timeout=WAIT) == 15
    assert after.result(timeout=WAIT) == 3
    assert squared.result(timeout=WAIT) == 81, "fed across the process pool"
    assert flows.app.handle(grouped.id).result(timeout=WAIT) == [2 * i for i in range(10)]


def test_a_failed_step_fails_the_workflow_and_offload_retry_resumes_it(
    flows: Any, start: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    flag = tmp_path / "fixed"
    add, app = flows.add, flows.app
    handle = offload.chain(add.s(1, 2), flows.fails_until.s(str(flag)), add.s(5)).delay()
    steps, final = handle.steps, handle.id
    start("--concurrency", "2")
    with pytest.raises(LookupError, match=r"no .* yet"):
        handle.result(timeout=WAIT)
    states = [app.job(step).state for step in steps]
    assert states == [offload.State.SUCCEEDED, offload.State.FAILED, offload.State.FAILED]
    record = app.job(final).error
    assert record is not None and record.type == "builtins.LookupError"
    assert "did not run" in record.traceback
    flag.touch()
    assert app.inspector.retry(steps[1])  # what `offload retry ID` does
    deadline = time.monotonic() + WAIT
    while (job := app.job(final)) is None or job.state is not offload.State.SUCCEEDED:
        assert time.monotonic() < deadline, f"the workflow did not resume: {job}"
        time.sleep(0.05)
    assert app.serializer is not None and job.result is not None
    assert app.serializer.decode(job.result) == 35


def test_cancelling_a_workflow_cancels_its_queued_steps(
    flows: Any, start: Callable[..., subprocess.Popen[str]]
) -> None:
    add, app = flows.add, flows.app
    handle = offload.chord([add.s(1, 1), add.s(2, 2)], flows.total.s()).delay()
    assert handle.cancel()
    assert {app.job(step).state for step in handle.steps} == {offload.State.CANCELLED}
    with pytest.raises(offload.TaskCancelled):
        handle.result(timeout=WAIT)
    start()
    later = add(1, 1)
    assert later.result(timeout=WAIT) == 2  # the worker is up: nothing of the workflow ran
    assert {app.job(step).state for step in handle.steps} == {offload.State.CANCELLED}


def test_a_cancelled_dependency_cancels_its_dependent_unrun(
    flows: Any, start: Callable[..., subprocess.Popen[str]]
) -> None:
    add, app = flows.add, flows.app
    later = add.options(delay=3600)(1, 1)
    dependent = add.options(depends_on=[later])(2, 2)
    assert later.cancel()
    start()
    with pytest.raises(offload.TaskCancelled):
        dependent.result(timeout=WAIT)
    job = app.job(dependent.id)
    assert job is not None and job.state is offload.State.CANCELLED


MEMBERS = 1000
WORKERS = 4
THREADS = 4
CHORD_WAIT = 90.0


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _kill_when(path: Path, done: int, worker: subprocess.Popen[str]) -> None:
    """SIGKILL ``worker`` (and its process group) once ``done`` members ran."""
    deadline = time.monotonic() + CHORD_WAIT
    while len(_lines(path)) < done:
        assert time.monotonic() < deadline, f"only {len(_lines(path))} members ran"
        time.sleep(0.02)
    os.killpg(worker.pid, signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL


def test_a_chord_of_1000_calls_back_once_under_sigkill(
    flows: Any, start: Callable[..., subprocess.Popen[str]], tmp_path: Path, db_url: str
) -> None:
    members, callbacks = tmp_path / "members.txt", tmp_path / "callbacks.txt"
    began = time.monotonic()
    handle = offload.chord(
        (flows.member.s(str(members), i, 0.02) for i in range(MEMBERS)),
        flows.callback.s(str(callbacks)),
    ).delay()
    workers = [start("--concurrency", str(THREADS), "--lease", "2") for _ in range(WORKERS)]
    _kill_when(members, MEMBERS // 4, workers[0])
    _kill_when(members, MEMBERS // 2, workers[1])
    assert handle.result(timeout=CHORD_WAIT) == MEMBERS
    ran = Counter(int(line) for line in _lines(members))
    lost = [i for i in range(MEMBERS) if ran[i] == 0]
    duplicated = sum(count - 1 for count in ran.values())
    callbacks_run = len(_lines(callbacks))
    states = flows.app.inspector.job_states(handle.steps)
    jobs = [flows.app.job(step) for step in handle.steps[:MEMBERS]]
    redelivered = sum(1 for job in jobs if job is not None and job.attempt > 1)
    print(
        f"\nchord of {MEMBERS} on {db_url.partition(':')[0]}: {WORKERS} workers x {THREADS} "
        f"threads, 2 SIGKILLed: callbacks run {callbacks_run}, members lost {len(lost)}, "
        f"members run twice {duplicated}, members redelivered {redelivered}, "
        f"{time.monotonic() - began:.1f}s"
    )
    assert callbacks_run == 1
    assert redelivered >= 1, "the killed workers held members: their leases lapsed"
    assert lost == []
    assert duplicated <= 2 * THREADS, "only what the killed workers held runs again"
    assert set(states.values()) == {offload.State.SUCCEEDED}
    assert len(states) == MEMBERS + 1
