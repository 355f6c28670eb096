"""A worker whose broker does not answer says so in one line, and --wait-for-broker gives up."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from helpers import TESTS

UNREACHABLE = "redis://:hunter2@127.0.0.1:1/0?namespace=nowhere"
"""A Redis URL with a password, on a port nothing listens on."""


def _worker(*options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OFFLOAD_TEST_URL": UNREACHABLE, "PYTHONPATH": str(TESTS)}
    return subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "durable_tasks:app", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_wait_for_broker_gives_up_with_one_line_naming_the_broker() -> None:
    started = time.monotonic()
    worker = _worker("--wait-for-broker", "2")
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert time.monotonic() - started < 30
    assert "hunter2" not in output
    said = [line for line in output.splitlines() if "cannot reach the broker at" in line]
    assert len(said) == 1, output
    assert "127.0.0.1:1" in said[0] and "retrying for up to 2s, then exiting" in said[0]
    assert "did not answer within --wait-for-broker 2s" in output


def test_by_default_a_worker_keeps_trying_and_says_so() -> None:
    worker = _worker()
    try:
        line = ""
        deadline = time.monotonic() + 30
        assert worker.stdout is not None
        while "cannot reach the broker" not in line and time.monotonic() < deadline:
            line = worker.stdout.readline()
        assert "retrying until it answers (--wait-for-broker SECONDS to give up)" in line
        assert "hunter2" not in line
        time.sleep(2)
        assert worker.poll() is None  # still trying
    finally:
        worker.kill()
        worker.communicate(timeout=30)
