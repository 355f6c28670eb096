"""A worker that loses a lease hears it from the heartbeat and records nothing for it.

The real way a lease is lost: the worker process stops (SIGSTOP here; a
long GC pause or a frozen VM in life), its lease lapses, another worker
claims the job. When the first resumes, ``extend`` answers ``Lease.LOST``:
it logs that once, lets the function finish (a thread cannot be stopped),
and records no outcome, which the fencing token would refuse anyway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import offload
from helpers import wait_until
from offload import State
from offload._message import Outcome


def test_a_lost_lease_is_logged_and_its_outcome_not_recorded(
    db_url: str, tasks: Any, start_worker: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    worker = start_worker("--lease", "1", "--log-level", "INFO")
    ran = tmp_path / "ran.txt"
    handle = tasks.slow_record.delay(str(ran), "first", 5.0)
    app = tasks.app
    other = offload.App(db_url)  # the other worker: a connection of its own
    assert wait_until(lambda: _state(app, handle.id) is State.RUNNING, timeout=30)

    os.kill(worker.pid, signal.SIGSTOP)
    try:
        # Past the 1 s lease, it lapses while the worker is stopped: another worker's
        # claim takes it. Redis lists a lease by its end rounded up to a whole second,
        # so there it may come up to a second later: claim until it does.
        time.sleep(1.1)
        deadline = time.monotonic() + 5.0
        while not (stolen := other.broker.claim(None, 1, 60.0)) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert [d.message.id for d in stolen] == [handle.id]
    assert stolen[0].attempt == 2

    # The first worker's function finishes (it writes its line) but records nothing.
    assert wait_until(lambda: ran.exists() and ran.read_text() == "first\n", timeout=30)
    time.sleep(0.5)
    assert _state(app, handle.id) is State.RUNNING, "the new claim still owns the job"
    assert other.broker.ack(stolen[0], Outcome(State.SUCCEEDED, payload=b'"second"'))
    assert handle.result(timeout=30) == "second"
    other.shutdown()

    worker.send_signal(signal.SIGTERM)
    log = worker.communicate(timeout=30)[0]
    assert "its lease was lost" in log
    assert "ended after its lease was lost; its outcome was not recorded" in log


def _state(app: Any, job_id: str) -> State | None:
    job = app.job(job_id)
    return None if job is None else job.state
