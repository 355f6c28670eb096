"""Progress across processes: a real worker's task reports it, this process reads it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from helpers import wait_until
from offload._message import Progress
from offload.cli import main

WAIT = 30.0


def test_a_worker_s_progress_reaches_the_handle_app_job_and_offload_show(
    tasks: Any,
    db_url: str,
    start_worker: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    handle = tasks.report_then_wait(str(release), 10)
    start_worker()

    def reported(progress: Progress | None) -> bool:
        return progress is not None and progress.done == 9

    assert wait_until(lambda: reported(handle.progress), WAIT), handle.progress
    progress = handle.progress
    assert progress is not None
    assert (progress.done, progress.total, progress.note) == (9.0, 10.0, "step 9")
    job = tasks.app.job(handle.id)
    assert job is not None and reported(job.progress)
    shown = CliRunner().invoke(main, ["show", handle.id, "--app", "durable_tasks:app"])
    assert shown.exit_code == 0, shown.output
    assert "progress: 9 of 10 (90%), step 9, at " in shown.output

    release.touch()
    assert handle.result(timeout=WAIT) == 10
    final = tasks.app.job(handle.id).progress
    assert final is not None and (final.done, final.note) == (10.0, "all done"), final
