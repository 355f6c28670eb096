"""Smoke test of the benchmark harness (benchmarks/): one tiny scenario, in this process.

The real benchmark runs every system in a child process of its own venv
(``python -m benchmarks``); here offload's runners are called directly for a
few hundred tasks (in-process) and 50 (durable, SQLite in a temp dir), so
the harness can't rot unnoticed. No venv is built, no server is needed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from helpers import TESTS

ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def _importable_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    # benchmarks/ is a package of the repository, not of the offload
    # distribution, so it's only importable with the repository root on the path.
    monkeypatch.syspath_prepend(str(ROOT))


def test_offload_overhead_runner_and_table_ratio() -> None:
    from benchmarks.record import ScenarioResult
    from benchmarks.report import render_table
    from benchmarks.scenarios import overhead
    from benchmarks.systems import OFFLOAD, TPE

    figures = overhead.run(OFFLOAD, {"tasks": 200, "warmup": 20, "wait_timeout": 10.0})

    assert figures["submit_all_us"] > 0
    assert figures["one_at_a_time_us"] > 0
    scenario = overhead.SCENARIO
    result = ScenarioResult(
        scenario.name, scenario.title, {}, [OFFLOAD, TPE], list(scenario.metrics)
    )
    result.add(OFFLOAD, figures)
    # A peer exactly twice as slow makes offload's ratio 0.50x, whatever the machine.
    result.add(TPE, {key: value * 2 for key, value in figures.items()})
    rows = [line for line in render_table([result]).splitlines() if "submit all" in line]
    assert len(rows) == 1
    assert "0.50\N{MULTIPLICATION SIGN} ThreadPoolExecutor" in rows[0]


def test_offload_sqlite_enqueue_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.peers import servers
    from benchmarks.scenarios import enqueue

    # The runner points this process at its store through the environment,
    # as it does in a child; leave the test process's environment as it was.
    for name in ("BENCH_BACKEND", "BENCH_REDIS_URL", "BENCH_PG_URL", servers.SQLITE_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "benchmarks.peers.offload_durable", raising=False)

    figures = enqueue.run("sqlite", "offload", {"tasks": 50, "warmup": 5})

    assert figures["one_per_s"] > 0
    assert figures["batch_per_s"] > 0


def test_offload_sqlite_scale_runner_measures_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.peers import servers
    from benchmarks.scenarios import scale

    for name in ("BENCH_BACKEND", "BENCH_REDIS_URL", "BENCH_PG_URL", servers.SQLITE_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "benchmarks.peers.offload_durable", raising=False)
    params = {"depth": 400, "lead": 20, "window": 100, "processes": 2, "wait_timeout": 30.0}

    figures = scale.run("sqlite", "offload", params)

    assert figures["drain_400"] > 0
    assert figures["rss_400"] > 1  # MiB: the worker processes were found by group


def test_scale_window_by_count_times_the_tasks_between_two_polls() -> None:
    from benchmarks.scenarios import scale

    started = time.perf_counter()

    class Counting:  # a library done at 2,000 tasks/s, counted exactly
        def done_count(self) -> int:
            return int((time.perf_counter() - started) * 2_000)

    class Running:
        def check(self) -> None:
            pass

    rate = scale._window_by_count(
        Counting(),  # type: ignore[arg-type]
        Running(),  # type: ignore[arg-type]
        100,
        400,
        timeout=10.0,
        what="counting",
    )

    assert 1_500 < rate < 2_500  # polls every 20 ms: the window is ~0.2 s


def test_scale_parts_derive_and_rows() -> None:
    from benchmarks.scenarios import SCENARIOS, scale

    scenario = SCENARIOS["scale-redis"]
    params = scenario.params(quick=False)
    parts = scenario.parts(params)

    def runs(system: str, depth: str, round_number: int) -> bool:
        return any(p.runs(system, round_number) for p in parts if p.name == depth)

    # offload runs every depth in every round, its deepest (1M, the target's row)
    # too; a peer runs up to its own limit (its deepest in round 1 only); some sit it out.
    assert runs("offload", "100k", 3) and runs("offload", "1M", 1) and runs("offload", "1M", 3)
    assert runs("Huey", "10k", 3) and runs("Huey", "100k", 1) and not runs("Huey", "100k", 2)
    assert not runs("Huey", "1M", 1) and not runs("Celery", "10k", 1)
    assert scenario.derive is not None
    derived = scenario.derive(params, {"drain_10k": 200.0, "drain_100k": 100.0, "drain_1M": 190.0})
    assert derived == {"ratio_100k": 50.0, "ratio_1M": 95.0}
    assert scenario.derive(params, {"drain_10k": 200.0, "drain_100k": 210.0}) == {
        "ratio_100k": 105.0
    }
    quick = scenario.params(quick=True)
    assert {p.name for p in scenario.parts(quick)} == {scale.label(d) for d in quick["depths"]}
    keys = [metric.key for metric in scenario.metrics_for(quick=True)]
    assert keys[0] == f"drain_{scale.label(quick['depths'][0])}"


def test_only_accepts_names_and_tags() -> None:
    from benchmarks.scenarios import select

    assert select("drain:sqlite") == ["drain-sqlite"]
    assert select("seed,enqueue-redis") == ["seed", "enqueue-redis"]
    assert set(select("sqlite")) == {
        "enqueue-sqlite",
        "drain-sqlite",
        "roundtrip-sqlite",
        "scale-sqlite",
        "sqlite-full",
    }
    assert select("scale:redis") == ["scale-redis"]
    with pytest.raises(ValueError, match="names no scenario"):
        select("nonsense")


def test_rounds_are_interleaved_across_systems() -> None:
    from benchmarks.harness import rotations

    assert rotations(["A", "B", "C"], 4) == [
        ["A", "B", "C"],
        ["B", "C", "A"],
        ["C", "A", "B"],
        ["A", "B", "C"],
    ]


def test_a_child_that_overruns_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    from benchmarks.harness import BenchError, run_command

    pid_file = tmp_path / "grandchild.pid"
    # The child starts a grandchild (as a worker command would) and hangs.
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with pytest.raises(BenchError, match="timed out"):
        run_command([sys.executable, "-c", script], timeout=3.0)
    assert time.monotonic() - started < 15
    assert not _alive(int(pid_file.read_text()))


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return os.path.exists(f"/proc/{pid}")


def test_offload_is_compiled_before_a_run_as_pip_compiles_the_peers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.harness import compile_offload

    # An A/B run's other source tree is compiled too.
    other = tmp_path / "src" / "offload"
    other.mkdir(parents=True)
    (other / "probe.py").write_text("VALUE = 1\n")
    monkeypatch.setenv("BENCH_OFFLOAD_SRC", str(tmp_path / "src"))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as on the machines it is for
    compile_offload(Path(sys.executable))
    assert list((other / "__pycache__").glob("probe.*.pyc"))
    assert list((ROOT / "src" / "offload" / "__pycache__").glob("_app.*.pyc"))
