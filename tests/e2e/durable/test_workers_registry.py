"""``offload workers``: real worker processes register, beat, and leave (every durable broker)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from helpers import wait_until
from offload.cli import main

WAIT = 30.0
StartWorker = Callable[..., "subprocess.Popen[str]"]


def _listed() -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["workers", "--app", "durable_tasks:app", "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.strip()]


def test_live_workers_are_listed_with_what_they_run_and_leave_on_a_clean_stop(
    tasks: Any, start_worker: StartWorker, tmp_path: Path
) -> None:
    mail = start_worker("--queues", "mail,default", "--concurrency", "3")
    other = start_worker("--concurrency", "2")
    assert wait_until(lambda: len(_listed()) == 2, WAIT)
    by_pid = {w["pid"]: w for w in _listed()}
    assert by_pid[mail.pid]["queues"] == ["mail", "default"]
    assert (by_pid[mail.pid]["pool"], by_pid[mail.pid]["concurrency"]) == ("threads", 3)
    assert (by_pid[other.pid]["queues"], by_pid[other.pid]["concurrency"]) == ([], 2)
    assert by_pid[mail.pid]["id"].split(":")[1] == str(mail.pid)

    handle = tasks.slow_record(str(tmp_path / "marks"), "x", 8.0)

    def running() -> bool:
        return any(handle.id in w["running"] for w in _listed())

    assert wait_until(running, WAIT)  # the next heartbeat tells what it runs

    text = CliRunner().invoke(main, ["workers", "--app", "durable_tasks:app"]).output
    assert text.splitlines()[0].split()[:3] == ["ID", "HOST", "PID"]
    assert str(mail.pid) in text and str(other.pid) in text

    idle = (
        other
        if not any(handle.id in w["running"] for w in _listed() if w["pid"] == other.pid)
        else mail
    )
    idle.send_signal(signal.SIGTERM)
    idle.wait(WAIT)
    assert [w["pid"] for w in _listed()] != [] and idle.pid not in [w["pid"] for w in _listed()]


def test_no_live_workers_is_said_plainly(tasks: Any) -> None:
    result = CliRunner().invoke(main, ["workers", "--app", "durable_tasks:app"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no live workers"
