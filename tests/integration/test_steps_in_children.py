"""``offload.step`` in a process pool's child: the parent records and answers it."""

from __future__ import annotations

from pathlib import Path

import offload
import process_tasks

CHILD_START = 30.0


def test_a_child_s_step_is_not_run_again_by_the_retry(tmp_path: Path) -> None:
    app = offload.App(processes=1)
    try:
        task = app.task(pool="process", retries=1, backoff=offload.Backoff(base=0))(
            process_tasks.step_then_fail_once
        )
        lines = tmp_path / "lines.txt"
        assert task(str(lines)).result(timeout=CHILD_START) == "written"
        assert lines.read_text().splitlines() == ["written"]
    finally:
        app.shutdown(wait=False, cancel_pending=True)


def test_a_durable_child_s_step_is_kept_in_the_broker(tmp_path: Path) -> None:
    app = offload.App(f"sqlite:///{tmp_path / 'jobs.db'}", embedded_worker=True, processes=1)
    try:
        task = app.task(pool="process", retries=1, backoff=offload.Backoff(base=0))(
            process_tasks.step_then_fail_once
        )
        lines = tmp_path / "lines.txt"
        handle = task(str(lines))
        assert handle.result(timeout=CHILD_START) == "written"
        assert lines.read_text().splitlines() == ["written"]
        store = app.inspector
        assert store.step_result(handle.id, "write") == b'"written"'  # type: ignore[attr-defined]
    finally:
        app.shutdown(wait=False)
