"""Durable steps across a real crash: a worker SIGKILLed after step 3 of 5.

Each step appends a line to a file; the job's next run (another worker,
once the dead one's lease lapsed) does steps 4 and 5 only.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

WAIT = 60.0


def test_a_killed_worker_s_job_resumes_after_its_last_finished_step(
    tasks: Any, start_worker: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    lines = tmp_path / "steps.txt"
    handle = tasks.five_steps(str(lines), 3)
    first = start_worker("--lease", "1")
    assert first.wait(timeout=WAIT) == -9, "the worker killed itself after step 3"
    assert lines.read_text().splitlines() == ["step 1", "step 2", "step 3"]
    start_worker("--lease", "1")
    assert handle.result(timeout=WAIT) == [f"step {n}" for n in range(1, 6)]
    assert lines.read_text().splitlines() == [f"step {n}" for n in range(1, 6)], (
        "steps 1 to 3 were not run again"
    )
    job = tasks.app.job(handle.id)
    assert job is not None and job.attempt == 2
