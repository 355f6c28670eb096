"""``offload demo``: the seed experiment as a command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from offload.cli import main


def test_demo_prints_both_wall_times_and_the_speed_up() -> None:
    result = CliRunner().invoke(main, ["demo", "--tasks", "10", "--duration", "0.05"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "10 tasks" in out
    sequential = re.search(r"one after another:\s+([\d.]+) s", out)
    parallel = re.search(r"with offload,\s+(\d+) threads:\s+([\d.]+) s", out)
    speed_up = re.search(r"speed-up:\s+([\d.]+)x", out)
    assert sequential and parallel and speed_up, out
    assert float(sequential.group(1)) >= 10 * 0.05
    assert int(parallel.group(1)) >= 10  # more threads than tasks, as bg.n = 110
    assert float(parallel.group(2)) < 10 * 0.05 / 2
    assert float(speed_up.group(1)) > 2


def test_demo_short_options() -> None:
    result = CliRunner().invoke(main, ["demo", "-n", "4", "-d", "0.01", "-w", "4"])
    assert result.exit_code == 0, result.output
    assert re.search(r"with offload,\s+4 threads", result.output)


@pytest.mark.parametrize(
    "args",
    [
        ["--tasks", "0"],
        ["--tasks", "-3"],
        ["--tasks", "many"],
        ["--duration", "-1"],
        ["--duration", "soon"],
        ["--workers", "0"],
        ["--no-such-option"],
    ],
)
def test_bad_option_values_are_usage_errors(args: list[str]) -> None:
    # Small valid values first, so that an accepted bad value still finishes fast.
    result = CliRunner().invoke(main, ["demo", "-n", "2", "-d", "0.01", *args])
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}\n{result.output}"
    assert "Usage:" in result.output or "Error" in result.output
    assert "Traceback" not in result.output


def test_demo_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--tasks", "--duration", "--workers"):
        assert option in result.output


def test_the_installed_command_runs() -> None:
    command = Path(sys.executable).with_name("offload")
    executable = str(command) if command.exists() else shutil.which("offload")
    if executable is None:
        pytest.skip("the offload console script is not installed in this environment")
    result = subprocess.run(
        [executable, "demo", "--tasks", "5", "--duration", "0.01"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "speed-up" in result.stdout


def test_python_dash_m_offload_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "offload", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "offload" in result.stdout


def test_a_long_baseline_is_announced_and_can_be_skipped() -> None:
    announced = CliRunner().invoke(main, ["demo", "-n", "60", "-d", "0.1"])
    assert announced.exit_code == 0, announced.output
    assert "one after another takes about 6 s" in announced.output
    skipped = CliRunner().invoke(main, ["demo", "-n", "20", "-d", "0.3", "--skip-sequential"])
    assert skipped.exit_code == 0, skipped.output
    assert not re.search(r"one after another:\s+\d+\.\d{3} s", skipped.output)  # not run
    assert "one after another: 6 s" in skipped.output  # said, not run
    wall = re.search(r"with offload,\s+30 threads:\s+([\d.]+) s", skipped.output)
    assert wall and float(wall.group(1)) < 0.3 * 20 / 2, skipped.output
