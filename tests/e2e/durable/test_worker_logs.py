"""What a worker process logs per job: one line each at INFO, JSON with --log-format json."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

WAIT = 30.0
StartWorker = Callable[..., "subprocess.Popen[str]"]


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=WAIT)
    return output


def test_json_lines_say_how_each_job_ended(tasks: Any, start_worker: StartWorker) -> None:
    worker = start_worker("--log-format", "json", "--log-level", "info")
    ok = tasks.add(1, 2)
    bad = tasks.fail("boom")
    assert ok.result(timeout=WAIT) == 3
    with pytest.raises(ValueError):
        bad.result(timeout=WAIT)
    output = _stop(worker)
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    by_job = {r["job_id"]: r for r in records if "state" in r}
    done = by_job[ok.id]
    assert (done["level"], done["state"], done["task"], done["queue"]) == (
        "INFO",
        "succeeded",
        tasks.add.name,
        "default",
    )
    assert done["attempt"] == 1 and done["duration"] >= 0
    failed = by_job[bad.id]
    assert (failed["level"], failed["state"]) == ("ERROR", "failed")
    assert "ValueError: boom" in failed["traceback"]


def test_nothing_per_job_at_warning(tasks: Any, start_worker: StartWorker) -> None:
    worker = start_worker("--log-level", "warning")
    handles = tasks.add.map(range(20), range(20))
    assert [h.result(timeout=WAIT) for h in handles] == [2 * i for i in range(20)]
    output = _stop(worker)
    assert not [line for line in output.splitlines() if any(h.id in line for h in handles)]
