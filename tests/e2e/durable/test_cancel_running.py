"""Cancelling a running job on a real worker: thread, asyncio and process pools, every broker.

The request is stored in the broker and rides the worker's lease heartbeat
(every third of the lease: 1 s with ``--lease 3``). ``handle.cancel()`` in
this process waits for the worker to stop the job and says whether it did.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpers import wait_until
from offload import State, TaskCancelled
from offload.cli import main

WAIT = 30.0


@pytest.mark.parametrize(
    "task_name", ["until_cancelled", "async_until_cancelled", "process_until_cancelled"]
)
def test_cancel_stops_a_running_job_within_a_heartbeat(
    tasks: Any,
    db_url: str,
    start_worker: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    task_name: str,
) -> None:
    marker = tmp_path / "marker"
    handle = getattr(tasks, task_name)(str(marker))
    start_worker("--lease", "3")
    assert wait_until(lambda: marker.exists() and "started" in marker.read_text(), WAIT)
    time.sleep(0.2)  # into its wait: a process interrupted while it writes stops there
    asked = time.monotonic()
    assert handle.cancel() is True
    answered = time.monotonic() - asked
    assert handle.cancelled() and handle.state is State.CANCELLED
    with pytest.raises(TaskCancelled):
        handle.result(timeout=0)
    assert wait_until(lambda: marker.read_text().endswith("told"), WAIT), marker.read_text()
    stopped = time.monotonic() - asked
    job = tasks.app.job(handle.id)
    assert job is not None and job.state is State.CANCELLED
    assert job.attempt == 1, "no retry follows a cancellation"
    print(
        f"\n{db_url.split(':', maxsplit=1)[0]} {task_name}: cancel() true after {answered:.2f} s, "
        f"the task stopped after {stopped:.2f} s"
    )
    assert answered < 10, "within a heartbeat (1 s here) and the worker's reaction"


def test_offload_cancel_asks_a_running_job_to_stop(
    tasks: Any, start_worker: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    handle = tasks.until_cancelled(str(marker))
    start_worker("--lease", "3")
    assert wait_until(marker.exists, WAIT)
    result = CliRunner().invoke(main, ["cancel", handle.id, "--app", "durable_tasks:app"])
    assert result.exit_code == 0, result.output
    assert "asked job" in result.output and "next heartbeat" in result.output
    assert wait_until(handle.done, WAIT)
    assert handle.cancelled()
    again = CliRunner().invoke(main, ["cancel", handle.id, "--app", "durable_tasks:app"])
    assert again.exit_code == 1 and "cancelled already" in again.output


def test_a_thread_that_runs_on_after_its_cancel_leaves_no_lease_warning(
    tasks: Any, start_worker: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    handle = tasks.ignores_cancel(str(marker), 3.0)
    worker = start_worker("--lease", "3")  # heartbeats every second while it runs on
    assert wait_until(lambda: marker.exists() and "started" in marker.read_text(), WAIT)
    assert handle.cancel() is True
    assert wait_until(lambda: marker.read_text().endswith("done"), WAIT)
    worker.terminate()
    output, _ = worker.communicate(timeout=WAIT)
    assert "cancelled while it runs on a thread" in output
    assert "lease was lost" not in output, "its outcome was recorded: no lease to renew"
    job = tasks.app.job(handle.id)
    assert job is not None and job.state is State.CANCELLED
