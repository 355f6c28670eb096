"""A PostgreSQL restart in the middle of a run loses nothing.

The test runs a private cluster of its own (initdb in a temporary folder, a
free port), so restarting it disturbs no one. Needs the server binaries and
root (to run them as the postgres user); skipped, saying why, without them
(failed instead under ``CI``, as the server tests are).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import TESTS, wait_until
from servers import skip_or_fail

WAIT = 90.0


def _as_postgres(*command: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120
    )


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, Path]]:
    """(URL, data folder) of a throwaway PostgreSQL cluster."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries or os.geteuid() != 0 or shutil.which("runuser") is None:
        skip_or_fail("needs PostgreSQL's server binaries and root (to run them as postgres)")
    pg_ctl = f"{binaries[-1]}/pg_ctl"
    # Not pytest's tmp_path: its parents are root's alone, and the server runs as postgres.
    data = Path(tempfile.mkdtemp(prefix="offload-pg-"))
    shutil.chown(data, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _as_postgres(f"{binaries[-1]}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    _as_postgres(pg_ctl, "-D", str(data), "-o", options, "-w", "start", "-l", f"{data}/log")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", data
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data, ignore_errors=True)


def test_a_restart_mid_run_loses_no_task(
    private_postgres: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, data = private_postgres
    pg_ctl = f"{sorted(glob.glob('/usr/lib/postgresql/*/bin'))[-1]}/pg_ctl"
    out = tmp_path / "done.txt"
    monkeypatch.setenv("OFFLOAD_TEST_URL", url)
    sys.modules.pop("durable_tasks", None)
    import durable_tasks

    ids = [str(i) for i in range(600)]
    durable_tasks.slow_record.map([str(out)] * len(ids), ids, [0.005] * len(ids))
    env = {**os.environ, "OFFLOAD_TEST_URL": url, "PYTHONPATH": str(TESTS)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "durable_tasks:app", "-c", "4"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: out.exists() and len(out.read_text().split()) >= 100, WAIT)
        # -l: else the restarted server keeps our captured pipes open, and run() waits forever
        _as_postgres(pg_ctl, "-D", str(data), "-m", "fast", "-w", "-l", f"{data}/log", "restart")
        done_at_restart = len(set(out.read_text().split()))
        assert done_at_restart < len(ids), "the restart came too late to test anything"
        assert wait_until(lambda: set(out.read_text().split()) == set(ids), WAIT), "lost"
        assert worker.poll() is None, "the worker must ride out the restart"
    finally:
        durable_tasks.app.shutdown(wait=False)
        sys.modules.pop("durable_tasks", None)
        worker.kill()
        worker.wait(10)
