"""A SIGKILLed worker's jobs run again once its heartbeat lapses, not when their leases end.

Before the worker registry, a killed worker's jobs waited for their leases
(30 s by default, measured on every broker). Now every worker beats every
2 s; when one's heartbeat lapses (10 s), the next beat of any other worker
makes the jobs it held claimable at once. The measured figure is printed
(``pytest -s``); the bound is generous for a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from helpers import wait_until
from offload import State
from offload.cli import main

JOBS = 4
BOUND = 20.0
"""Seconds from the kill to every job finished elsewhere: the lapse (10 s) plus room."""
StartWorker = Callable[..., "subprocess.Popen[str]"]


def _live_pids() -> list[int]:
    result = CliRunner().invoke(main, ["workers", "--app", "durable_tasks:app", "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line)["pid"] for line in result.output.splitlines() if line.strip()]


def test_a_killed_workers_jobs_finish_elsewhere_within_the_lapse(
    db_url: str, tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    doomed = start_worker("--concurrency", str(JOBS))
    marks = tmp_path / "marks"
    handles = [tasks.stall_first(str(marks), f"job{i}") for i in range(JOBS)]
    app = tasks.app

    def all_running() -> bool:
        return all(app.job(h.id).state is State.RUNNING for h in handles)

    assert wait_until(all_running, 30)  # the doomed worker holds every job
    survivor = start_worker("--concurrency", str(JOBS))
    assert wait_until(lambda: sorted(_live_pids()) == sorted([doomed.pid, survivor.pid]), 30)

    os.killpg(doomed.pid, signal.SIGKILL)
    killed = time.monotonic()
    doomed.wait(10)
    assert [h.result(timeout=BOUND + 10) for h in handles] == [f"job{i}" for i in range(JOBS)]
    recovered = time.monotonic() - killed
    scheme = db_url.partition(":")[0]
    print(f"\n{scheme}: {JOBS} jobs of a SIGKILLed worker finished elsewhere in {recovered:.1f} s")
    assert recovered < BOUND, f"{scheme}: recovery took {recovered:.1f} s"
    lines = marks.read_text().split("\n")
    assert sorted(line.split()[1] for line in lines if line) == [str(survivor.pid)] * JOBS
    assert all(app.job(h.id).attempt == 2 for h in handles)
    assert doomed.pid not in _live_pids()  # its entry was forgotten with its jobs
