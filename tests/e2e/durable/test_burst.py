"""``offload.testing.run_until_idle`` on every durable broker: an embedded worker, a real one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import offload
from offload import State
from offload.testing import run_until_idle

WAIT = 30.0


def test_an_embedded_worker_runs_the_burst_and_leaves_later_calls(db_url: str) -> None:
    app = offload.App(db_url, embedded_worker=True, name="burst")
    try:
        task = app.task(triple)
        now = task.map([1, 2, 3])
        later = task.options(delay=3600)(4)
        run_until_idle(app, timeout=WAIT)
        assert [handle.result(timeout=0) for handle in now] == [3, 6, 9]
        assert not later.done()
        assert app.job(later.id).state is State.QUEUED  # type: ignore[union-attr]
    finally:
        app.shutdown(wait=False)


def triple(x: int) -> int:
    return x * 3


def test_a_worker_process_runs_the_burst(
    tasks: Any, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    handles = [tasks.record(str(marks), str(i)) for i in range(10)]
    start_worker("--concurrency", "4")
    run_until_idle(tasks.app, timeout=WAIT)
    assert all(handle.done() for handle in handles)
    assert sorted(marks.read_text().split()) == sorted(str(i) for i in range(10))


def test_with_nobody_serving_the_broker_it_times_out_naming_the_jobs(tasks: Any) -> None:
    handle = tasks.add(1, 2)
    with pytest.raises(TimeoutError, match="does a worker serve") as info:
        run_until_idle(tasks.app, timeout=0.2)
    assert handle.id in str(info.value)
