"""Workflows on SQLite, Redis and PostgreSQL, run by real `offload worker` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
