"""``offload.background``: a drop-in for the ``background`` package, minus its bugs."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import offload
import offload.background as bg
from helpers import WAIT, wait_until

DURATION = 0.05
TASKS = 20


@pytest.fixture(autouse=True)
def restore_n() -> Iterator[None]:
    """Every test leaves ``bg.n`` as it found it."""
    before = bg.n
    yield
    bg.n = before


def bg_wait(futures: list[Future[Any]]) -> None:
    """The blog's own wait loop (with a short sleep instead of a busy ``pass``)."""
    deadline = time.monotonic() + WAIT * 2
    while not all(f.done() for f in futures):
        assert time.monotonic() < deadline, "the background tasks never finished"
        time.sleep(0.001)


def work() -> int:
    time.sleep(DURATION)
    return 1


bg_work = bg.task(work)


# -- the names ------------------------------------------------------------------


def test_n_defaults_to_default_n() -> None:
    assert bg.default_n() >= 1
    assert isinstance(bg.default_n(), int)
    assert bg.n == bg.default_n()


def test_task_keeps_the_function_metadata() -> None:
    def documented(x: int) -> int:
        """Documented."""
        return x

    wrapped = bg.task(documented)
    assert wrapped.__name__ == "documented"
    assert wrapped.__doc__ == "Documented."
    assert wrapped.__wrapped__ is documented
    assert wrapped(5).result(timeout=WAIT) == 5


def test_task_returns_a_future() -> None:
    future = bg_work()
    assert isinstance(future, Future)
    assert isinstance(future, offload.Handle)
    assert future.result(timeout=WAIT) == 1


def test_run_calls_a_function_in_the_background() -> None:
    def add(a: int, b: int, *, c: int = 0) -> int:
        return a + b + c

    future = bg.run(add, 1, 2)
    assert isinstance(future, Future)
    assert future.result(timeout=WAIT) == 3
    assert bg.run(add, 1, 2, c=3).result(timeout=WAIT) == 6


def test_callback_is_called_with_the_finished_future() -> None:
    seen: list[tuple[Future[Any], bool, object]] = []
    marker = object()

    def tagged() -> object:
        return marker

    @bg.callback
    def record(future: Future[Any]) -> None:
        # Every later bg task calls it too: keep only ours.
        if future.done() and not future.exception() and future.result() is marker:
            seen.append((future, future.done(), future.result()))

    assert callable(record)  # the decorator returns the function
    futures = [bg.task(tagged)() for _ in range(3)]
    bg_wait(futures)
    assert wait_until(lambda: len(seen) == 3)
    assert {id(f) for f, _, _ in seen} == {id(f) for f in futures}
    assert all(done and result is marker for _, done, result in seen)


# -- bg.n -----------------------------------------------------------------------


def test_assigning_n_resizes_the_pool() -> None:
    bg.n = 25
    assert bg.n == 25
    # 25 calls that can only finish together: they need 25 threads at once.
    barrier = threading.Barrier(25, timeout=WAIT)
    futures = [bg.run(barrier.wait) for _ in range(25)]
    bg_wait(futures)
    assert [f.exception() for f in futures] == [None] * 25


def test_assigning_a_smaller_n_limits_concurrency() -> None:
    bg.n = 2
    lock = threading.Lock()
    running = [0, 0]  # now, most

    def tracked() -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    bg_wait([bg.run(tracked) for _ in range(10)])
    assert running[1] <= 2


@pytest.mark.parametrize("value", [0, -3, 2.5, "10"])
def test_assigning_a_bad_n_raises_and_keeps_the_old_value(value: object) -> None:
    bg.n = 7
    with pytest.raises((offload.ConfigurationError, TypeError, ValueError)):
        bg.n = value  # type: ignore[assignment]
    assert bg.n == 7


# -- the original's bugs --------------------------------------------------------


def test_no_list_keeps_every_result() -> None:
    results_before = getattr(bg, "results", None)
    size_before = len(results_before) if results_before is not None else 0
    futures = [bg_work() for _ in range(10)]
    bg_wait(futures)
    results = getattr(bg, "results", None)
    assert results is None or len(results) == size_before


def test_finished_futures_are_freed() -> None:
    future = bg.run(abs, -1)
    assert future.result(timeout=WAIT) == 1
    ref = weakref.ref(future)
    del future
    gc.collect()
    assert ref() is None, "something in offload.background keeps finished futures alive"


def test_importing_background_starts_no_threads() -> None:
    code = (
        "import threading\n"
        "import offload.background as bg\n"
        "print(threading.active_count(), sorted(t.name for t in threading.enumerate()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.startswith("1 "), f"threads after `import offload.background`: {out}"


# -- the blog's three experiments, scaled down ----------------------------------


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_the_blog_experiments_have_the_right_shape() -> None:
    def blocking() -> None:
        for _ in range(TASKS):
            work()

    def in_background() -> None:
        f_list = [bg_work() for _ in range(TASKS)]
        while not all(f.done() for f in f_list):
            time.sleep(0.001)

    loop = timed(blocking)
    assert TASKS * DURATION <= loop < TASKS * DURATION * 1.5

    default = bg.default_n()
    assert bg.n == default
    with_default_n = timed(in_background)
    expected = math.ceil(TASKS / default) * DURATION
    assert expected * 0.9 <= with_default_n < expected * 1.5 + 0.1

    bg.n = TASKS + 5
    with_more_n = timed(in_background)
    assert with_more_n < 2.5 * DURATION, f"{with_more_n:.3f}s for one round of tasks"
    assert with_more_n < with_default_n / 2 or default >= TASKS
