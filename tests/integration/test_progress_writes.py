"""Progress from a process pool's child, and the broker writes a tight loop of reports costs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import offload
import process_tasks
from helpers import wait_until
from offload._brokers._base import ProgressStore
from offload._job_services import ProgressReporter
from offload._message import Delivery, Progress

CHILD_START = 30.0  # seconds a spawned child may take to start on a slow machine


def test_a_process_pool_task_s_progress_reaches_the_parent_s_handle(tmp_path: Path) -> None:
    app = offload.App(processes=1)
    try:
        task = app.task(pool="process")(process_tasks.report_then_wait)
        release = tmp_path / "release"
        handle = task(str(release), 5)
        assert wait_until(
            lambda: handle.progress is not None and handle.progress.done == 4, CHILD_START
        ), handle.progress
        assert handle.progress is not None and handle.progress.note == "step 4"
        release.touch()
        assert handle.result(timeout=CHILD_START) == 5
    finally:
        app.shutdown(wait=False, cancel_pending=True)


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[offload.App]:
    app = offload.App(f"sqlite:///{tmp_path / 'jobs.db'}", embedded_worker=True)
    yield app
    app.shutdown(wait=False)


def test_a_tight_loop_of_reports_writes_a_few_times_a_second_and_keeps_the_last(
    durable: offload.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = durable.inspector
    assert isinstance(store, ProgressStore)
    writes: list[float] = []
    record = store.record_progress

    def counted(delivery: Delivery, progress: Progress) -> bool:
        writes.append(progress.done)
        return record(delivery, progress)

    monkeypatch.setattr(store, "record_progress", counted)
    busy = durable.task(process_tasks.report_for)
    handle = busy(1.0, 1000)
    took = handle.result(timeout=30)
    final = durable.job(handle.id).progress  # type: ignore[union-attr]
    assert final is not None and writes[-1] == final.done, "the last report is what is stored"
    assert len(writes) <= took / ProgressReporter.INTERVAL + 3, (
        f"{len(writes)} writes in {took:.2f} s"
    )
    assert final.done >= 1000, "many more reports than writes"
