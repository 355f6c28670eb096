"""The documentation's code runs as written: the tutorial's two files and the testing how-to.

The pages include these files (``--8<--`` snippets), so what a reader copies
is what runs here: the tutorial in the background of one program, then
durable, with a real ``offload worker`` process and ``offload status``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from helpers import TESTS

DOCS = TESTS.parent / "docs"
BIN = Path(sys.executable).parent
TIMEOUT = 60


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def tutorial(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "tutorial"
    shutil.copytree(DOCS / "tutorial", folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    return folder, env


def test_the_tutorial_runs_in_the_background_of_the_program(tmp_path: Path) -> None:
    folder, env = tutorial(tmp_path)
    assert run([sys.executable, "main.py"], folder, env).strip() == "[2, 3, 1]"


def test_the_tutorial_runs_durable_with_a_worker_and_no_change(tmp_path: Path) -> None:
    folder, env = tutorial(tmp_path)
    env["OFFLOAD_URL"] = "sqlite:///jobs.db"
    worker = subprocess.Popen(
        [str(BIN / "offload"), "worker", "tasks"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run([sys.executable, "main.py"], folder, env).strip() == "[2, 3, 1]"
        status = run([str(BIN / "offload"), "status"], folder, env)
        assert status.splitlines()[1].split()[:6] == ["default", "0", "0", "0", "3", "0"], status
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=TIMEOUT)
    assert worker.returncode == 0, output
    assert "stopped" in output


def test_the_testing_how_to_passes(tmp_path: Path) -> None:
    example = DOCS / "examples" / "test_reminder.py"
    shutil.copy(example, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    output = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_reminder.py"],
        tmp_path,
        env,
    )
    assert "1 passed" in output
