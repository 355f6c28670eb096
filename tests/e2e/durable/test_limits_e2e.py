"""Limits across 4 real worker processes, on each durable broker (SQLite, Redis, PostgreSQL).

The tasks (``tests/limited_tasks.py``) write down the times they measured
themselves; the test reads them back. The figures are printed (``pytest -s``).
Bounds are the issue's, with room for a loaded 2-core machine where it says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import TESTS

WORKERS = 4
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def limited(db_url: str) -> Iterator[Any]:
    sys.modules.pop("limited_tasks", None)
    import limited_tasks

    yield limited_tasks
    limited_tasks.app.shutdown(wait=False)
    sys.modules.pop("limited_tasks", None)


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """``workers()`` starts 4 ``offload worker limited_tasks:app`` processes."""
    started: list[subprocess.Popen[str]] = []

    def start() -> None:
        env = {**os.environ, "OFFLOAD_TEST_URL": db_url, "PYTHONPATH": str(TESTS)}
        for _ in range(WORKERS):
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "offload", "worker", "limited_tasks:app"],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def wait_for(path: Path, count: int, timeout: float = 90.0) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = lines(path)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{len(lines(path))} of {count} calls ran within {timeout:g} s")


JITTER = 0.05
"""Seconds a task's own start time may trail the moment the broker let it go (a commit, a
thread hand-off, a loaded machine): windows of a second are checked ``JITTER`` shorter."""


def most_in_a_window(times: list[float], window: float = 1.0 - JITTER) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if first <= t < first + window) for first in times)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_a_rate_limit_holds_across_workers(
    limited: Any, workers: Callable[[], None], tmp_path: Path, db_url: str
) -> None:
    path = tmp_path / "rated.txt"
    handles = limited.rated.map([str(path)] * 130)
    workers()
    times = sorted(float(line[0]) for line in wait_for(path, 130))
    for handle in handles:  # waiting failed nothing and spent no attempt
        assert handle.result(timeout=30) is None
        job = limited.app.job(handle.id)
        assert job is not None and job.attempt == 1, job
    first = times[0]
    in_five = sum(1 for t in times if t < first + 5.0)
    peak = most_in_a_window(times)
    full = most_in_a_window(times, 1.0)
    rate = (len(times) - 1) / (times[-1] - first)
    print(
        f"\n{db_url.split(':', maxsplit=1)[0]}: rate_limit=20/s over 5 s: {in_five} calls; "
        f"{rate:.2f} calls/s overall; at most {peak} in any second "
        f"(start times, {JITTER:g} s of jitter allowed; {full} without)"
    )
    assert 95 <= in_five <= 105, in_five
    assert peak <= 20 + 1, f"{peak} calls in one second (rate 20/s, burst 1)"


def test_a_concurrency_limit_holds_while_other_tasks_run_freely(
    limited: Any, workers: Callable[[], None], tmp_path: Path, db_url: str
) -> None:
    spans_path, free_path = tmp_path / "bounded.txt", tmp_path / "free.txt"
    limited.bounded.map([str(spans_path)] * 20, [0.2] * 20)
    limited.free.map([str(free_path)] * 200)
    workers()
    spans = [(float(a), float(b)) for a, b in wait_for(spans_path, 20)]
    free = sorted(float(line[0]) for line in wait_for(free_path, 200))
    most = most_at_once(spans)
    bounded_end = max(end for _, end in spans)
    free_rate = (len(free) - 1) / max(free[-1] - free[0], 1e-9)
    print(
        f"\n{db_url.split(':', maxsplit=1)[0]}: concurrency=2: at most {most} running at once; "
        f"20 x 0.2 s calls took {bounded_end - min(s for s, _ in spans):.2f} s; "
        f"200 unlimited calls beside them: {free_rate:.0f} calls/s, all done "
        f"{bounded_end - free[-1]:.2f} s before the limited ones"
    )
    assert most <= 2
    assert most == 2, "both slots were used"
    assert free[-1] < bounded_end - 0.5, "the unlimited task did not wait behind the limited one"


def test_a_keyed_rate_limit_holds_per_key(
    limited: Any, workers: Callable[[], None], tmp_path: Path, db_url: str
) -> None:
    path = tmp_path / "keyed.txt"
    customers = ["acme", "globex", "initech"]
    limited.keyed.map([str(path)] * 90, [customers[i % 3] for i in range(90)])
    workers()
    found = wait_for(path, 90)
    per_key = {c: [float(t) for t, key in found if key == c] for c in customers}
    peaks = {c: most_in_a_window(times) for c, times in per_key.items()}
    overall = most_in_a_window([float(t) for t, _ in found])
    print(
        f"\n{db_url.split(':', maxsplit=1)[0]}: rate_limit=10/s per key, 3 keys: at most {peaks} "
        f"per key in any 1 s window; {overall} across keys"
    )
    assert all(peak <= 10 + 1 for peak in peaks.values()), peaks  # burst 1
    assert overall > 10, "each key has a limit of its own"
