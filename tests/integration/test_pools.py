"""Pools: thread (sized, resizable, timeouts), process (spawned, killable), async."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import offload
import process_tasks
from helpers import WAIT, wait_until
from offload.testing import FakeClock, run_until_idle

CHILD_START = 30.0  # seconds a spawned child may take to start on a slow machine


class Concurrency:
    """Counts how many calls run at once, and the most ever seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(seconds)
        with self.lock:
            self.now -= 1


# -- thread pool --------------------------------------------------------------


def test_thread_pool_default_size(app: offload.App) -> None:
    assert app.pool_size("thread") == min(32, (os.cpu_count() or 1) + 4)
    assert app.pool_size() == app.pool_size("thread")


def test_thread_pool_size_from_the_app(make_app: Callable[..., offload.App]) -> None:
    assert make_app(threads=3).pool_size("thread") == 3


def test_a_durable_apps_worker_has_32_threads_unless_told(tmp_path: Path) -> None:
    # Its calls wait on the broker's round trips: more threads drain faster.
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    durable, chosen = offload.App(url), offload.App(url, threads=3)
    try:
        assert durable.pool_size("thread") == durable.worker().size("thread") == 32
        assert chosen.worker().size("thread") == 3
        assert durable.worker(concurrency=5).size("thread") == 5
        assert durable.pool_size("process") == (os.cpu_count() or 1), "processes: as before"
    finally:
        durable.shutdown()
        chosen.shutdown()


def test_thread_pool_runs_that_many_at_once(make_app: Callable[..., offload.App]) -> None:
    app = make_app(threads=4)
    barrier = threading.Barrier(4, timeout=WAIT)
    handles = app.task(name="barrier")(barrier.wait).map([None] * 4)
    _, not_done = offload.wait(handles, timeout=WAIT)
    assert not not_done
    assert all(h.exception() is None for h in handles), "4 threads should meet at the barrier"


# A call made while nothing runs is claimed by the caller's thread (no
# dispatcher hand-off); the tests below check nothing changes for the user.


def test_calls_made_one_by_one_still_run_that_many_at_once(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(threads=4)
    barrier = threading.Barrier(4, timeout=WAIT)
    meet = app.task(name="barrier")(barrier.wait)
    handles = [meet() for _ in range(4)]  # the first finds the pool idle
    _, not_done = offload.wait(handles, timeout=WAIT)
    assert not not_done
    assert all(h.exception() is None for h in handles), "4 threads should meet at the barrier"


def test_a_call_made_while_the_only_thread_is_busy_runs_after_it(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(threads=1)
    release = threading.Event()
    first = app.task(name="wait")(release.wait)(WAIT)
    assert wait_until(lambda: first.state is offload.State.RUNNING)
    second = app.task(abs)(-2)
    time.sleep(0.05)
    assert second.state is offload.State.QUEUED
    release.set()
    assert second.result(WAIT) == 2


def test_many_threads_calling_and_waiting_one_at_a_time(
    make_app: Callable[..., offload.App],
) -> None:
    # Callers race each other and the dispatcher to claim from an idle pool.
    app = make_app(threads=2)
    square = app.task(name="square")(lambda x: x * x)
    wrong: list[tuple[int, int]] = []

    def caller(base: int) -> None:
        for i in range(base, base + 300):
            if square(i).result(WAIT) != i * i:
                wrong.append((base, i))

    callers = [threading.Thread(target=caller, args=(n * 1000,)) for n in range(6)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(4 * WAIT)
    assert not any(thread.is_alive() for thread in callers), "a call was never run"
    assert not wrong


def test_a_delayed_call_made_while_idle_runs_when_due(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    handle = fake_clock_app.task(abs).options(delay=30)(-4)
    run_until_idle(fake_clock_app)
    assert handle.state is offload.State.QUEUED
    clock.advance(31)
    run_until_idle(fake_clock_app)
    assert handle.result(timeout=0) == 4


def test_resize_up_while_running(make_app: Callable[..., offload.App]) -> None:
    app = make_app(threads=2)
    barrier = threading.Barrier(6, timeout=WAIT)
    handles = app.task(name="barrier")(barrier.wait).map([None] * 6)
    time.sleep(0.05)
    assert not any(h.done() for h in handles), "6 parties cannot meet on 2 threads"
    app.resize("thread", 6)
    assert app.pool_size("thread") == 6
    _, not_done = offload.wait(handles, timeout=WAIT)
    assert not not_done
    assert [h.exception() for h in handles] == [None] * 6


def test_resize_down_while_running(make_app: Callable[..., offload.App]) -> None:
    app = make_app(threads=4)
    tracker = Concurrency()
    track = app.task(name="track")(tracker)
    offload.wait(track.map([0.05] * 8), timeout=WAIT)
    assert tracker.most > 1, "4 threads should run calls side by side"
    app.resize("thread", 1)
    assert app.pool_size("thread") == 1
    tracker.most = 0
    handles = track.map([0.01] * 10)
    _, not_done = offload.wait(handles, timeout=WAIT)
    assert not not_done
    assert tracker.most == 1


def test_resize_down_while_calls_are_running(make_app: Callable[..., offload.App]) -> None:
    app = make_app(threads=3)
    first_tracker, later_tracker = Concurrency(), Concurrency()
    first = app.task(name="first")(first_tracker).map([0.1] * 3)
    assert wait_until(lambda: first_tracker.now == 3)
    app.resize("thread", 1)
    later = app.task(name="later")(later_tracker).map([0.01] * 6)
    _, not_done = offload.wait([*first, *later], timeout=WAIT)
    assert not not_done
    # The three running calls finish; the new ones then run one at a time.
    assert first_tracker.most == 3
    assert later_tracker.most == 1


@pytest.mark.parametrize("size", [0, -1, 1.5, "4", True])
def test_resize_refuses_bad_sizes(app: offload.App, size: object) -> None:
    with pytest.raises(offload.ConfigurationError, match="positive integer"):
        app.resize("thread", size)  # type: ignore[arg-type]


def test_pool_names_are_checked(app: offload.App) -> None:
    with pytest.raises(offload.ConfigurationError, match="unknown pool"):
        app.pool_size("gpu")
    with pytest.raises(offload.ConfigurationError, match="unknown pool"):
        app.resize("gpu", 2)


def test_thread_timeout_fails_the_handle_and_warns(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="offload")
    release = threading.Event()

    @app.task(timeout=0.2)
    def stuck() -> None:
        release.wait(WAIT)

    started = time.monotonic()
    handle = stuck()
    try:
        with pytest.raises(offload.TaskTimeout) as info:
            handle.result(timeout=WAIT)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert 0.15 <= elapsed < 2.0, f"failed after {elapsed:.2f}s, the deadline was 0.2s"
    assert isinstance(info.value, TimeoutError)
    assert "stuck" in str(info.value)
    assert handle.state is offload.State.FAILED
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "cannot be stopped" in text
    assert "pool='process'" in text


def test_thread_timeout_follows_the_clock(fake_clock_app: offload.App, clock: FakeClock) -> None:
    release = threading.Event()

    # 20 s: below the worker's 30 s lease (see test_handle's clock-jump test).
    @fake_clock_app.task(timeout=20)
    def stuck() -> None:
        release.wait(WAIT)

    handle = stuck()
    try:
        assert wait_until(lambda: handle.state is offload.State.RUNNING)
        time.sleep(0.05)
        assert not handle.done(), "20 fake seconds have not passed"
        clock.advance(21)
        with pytest.raises(offload.TaskTimeout):
            handle.result(timeout=WAIT)
    finally:
        release.set()


def test_thread_task_finishing_in_time_is_not_timed_out(app: offload.App) -> None:
    handle = app.task(timeout=5)(abs)(-3)
    assert handle.result(timeout=WAIT) == 3


# -- process pool -------------------------------------------------------------


def test_process_task_runs_in_another_process(make_app: Callable[..., offload.App]) -> None:
    app = make_app(processes=1)
    square = app.task(pool="process")(process_tasks.square)
    pid = app.task(pool="process")(process_tasks.pid)
    assert square(7).result(timeout=CHILD_START) == 49
    child = pid().result(timeout=CHILD_START)
    assert child != os.getpid()
    assert pid().result(timeout=WAIT) == child, "one child serves calls one after another"


def test_process_task_declared_with_the_decorator() -> None:
    try:
        assert process_tasks.decorated_cube(3).result(timeout=CHILD_START) == 27
        assert process_tasks.decorated_cube.fn(2) == 8
    finally:
        offload.shutdown(wait=False, cancel_pending=True)


def test_process_map(make_app: Callable[..., offload.App]) -> None:
    app = make_app(processes=2)
    square = app.task(pool="process")(process_tasks.square)
    handles = square.map(range(6))
    assert [h.result(timeout=CHILD_START) for h in handles] == [0, 1, 4, 9, 16, 25]


def test_lambda_is_refused_for_the_process_pool(app: offload.App) -> None:
    task = app.task(pool="process")(lambda x: x)
    with pytest.raises(offload.TaskNotImportable) as info:
        task(1)
    message = str(info.value)
    assert "lambda" in message
    assert "top level of a module" in message  # what to do
    assert "pool='thread'" in message
    assert isinstance(info.value, offload.ConfigurationError)


def test_closure_is_refused_for_the_process_pool(app: offload.App) -> None:
    def inner(x: int) -> int:
        return x

    task = app.task(pool="process")(inner)
    with pytest.raises(offload.TaskNotImportable) as info:
        task(1)
    message = str(info.value)
    assert "defined inside" in message
    assert "test_closure_is_refused_for_the_process_pool" in message
    assert "top level of a module" in message
    with pytest.raises(offload.TaskNotImportable):
        task.map([1, 2])
    with pytest.raises(offload.TaskNotImportable):
        task.options(timeout=1)(1)


INTERACTIVE = """
import offload

@offload.task(pool="process")
def double(x):
    return 2 * x

try:
    double(1)
except offload.TaskNotImportable as error:
    print("REFUSED:", error)
else:
    print("ACCEPTED")
"""


def test_function_of_an_interactive_main_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-c", INTERACTIVE],
        capture_output=True,
        text=True,
        timeout=CHILD_START,
        check=True,
    ).stdout
    assert out.startswith("REFUSED:"), out
    assert "interactive" in out
    assert ".py file" in out  # what to do


def test_refusal_names_a_shadowed_function(app: offload.App) -> None:
    # A module-level name that now points to another object: the child would
    # import the wrong thing.
    def square(x: int) -> int:
        return -x

    square.__module__ = process_tasks.__name__
    square.__qualname__ = "square"
    with pytest.raises(offload.TaskNotImportable, match="another object"):
        app.task(pool="process")(square)(2)


def test_process_timeout_kills_and_replaces_the_child(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(processes=1)
    pid = app.task(pool="process")(process_tasks.pid)
    sleep_then = app.task(pool="process", timeout=0.5)(process_tasks.sleep_then)
    first = pid().result(timeout=CHILD_START)  # the child is up
    started = time.monotonic()
    with pytest.raises(offload.TaskTimeout) as info:
        sleep_then(20).result(timeout=WAIT)
    assert time.monotonic() - started < 5, "the handle should fail at the deadline"
    assert "0.5" in str(info.value)
    # The child was killed (not left sleeping) and a new one serves the next call.
    assert wait_until(lambda: not _alive(first))
    second = pid().result(timeout=CHILD_START)
    assert second != first


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_exception_in_the_child_keeps_its_type_and_traceback(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(processes=1)
    boom = app.task(pool="process")(process_tasks.boom)
    with pytest.raises(ValueError, match="from the child") as info:
        boom("from the child").result(timeout=CHILD_START)
    cause = info.value.__cause__
    assert isinstance(cause, offload.RemoteTraceback)
    assert "boom" in cause.text
    assert "ValueError: from the child" in cause.text
    assert "boom" in str(cause)
    # The child survives a task's exception.
    assert app.task(pool="process")(process_tasks.square)(3).result(timeout=WAIT) == 9


def test_unpicklable_argument_fails_the_call_with_advice(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(processes=1)
    square = app.task(pool="process")(process_tasks.square)
    with pytest.raises(TypeError, match="pickle"):
        square(threading.Lock()).result(timeout=CHILD_START)  # type: ignore[arg-type]


# -- async pool -----------------------------------------------------------------


def test_async_task_result(app: offload.App) -> None:
    @app.task
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    assert fetch.spec.pool == "async"
    assert fetch(1).result(timeout=WAIT) == 2


def test_async_tasks_run_on_one_loop_thread(app: offload.App) -> None:
    @app.task
    async def where() -> tuple[str, int]:
        await asyncio.sleep(0)
        return threading.current_thread().name, threading.get_ident()

    results = {h.result(timeout=WAIT) for h in [where() for _ in range(10)]}
    assert len(results) == 1
    name, ident = results.pop()
    assert "asyncio" in name
    assert ident != threading.get_ident()


def test_async_tasks_run_concurrently_on_the_loop(app: offload.App) -> None:
    count = 20
    arrived = [0]

    @app.task
    async def meet() -> int:
        arrived[0] += 1
        for _ in range(int(WAIT / 0.005)):
            if arrived[0] >= count:
                return arrived[0]
            await asyncio.sleep(0.005)
        raise AssertionError("the coroutines did not run side by side")

    handles = [meet() for _ in range(count)]
    assert [h.result(timeout=WAIT + 1) for h in handles] == [count] * count


def test_async_timeout_cancels_the_coroutine(app: offload.App) -> None:
    cancelled = threading.Event()

    @app.task(timeout=0.1)
    async def slow() -> None:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with pytest.raises(offload.TaskTimeout):
        slow().result(timeout=WAIT)
    assert time.monotonic() - started < 2
    assert cancelled.wait(WAIT), "the coroutine never saw CancelledError"


def test_async_task_own_timeout_error_is_not_a_deadline(app: offload.App) -> None:
    @app.task(timeout=5)
    async def gives_up() -> None:
        raise TimeoutError("my own")

    with pytest.raises(TimeoutError, match="my own") as info:
        gives_up().result(timeout=WAIT)
    assert not isinstance(info.value, offload.TaskTimeout)


def test_async_task_called_and_awaited_inside_a_running_loop(app: offload.App) -> None:
    @app.task
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    async def main() -> tuple[int, list[int], bool]:
        handle = double(21)  # no blocking call on this loop
        first = await handle
        rest = await offload.gather(double(1), double(2))
        return first, rest, isinstance(handle, offload.Handle)

    assert asyncio.run(main()) == (42, [2, 4], True)


def test_sync_task_never_runs_on_the_loop_thread(app: offload.App) -> None:
    @app.task
    async def loop_thread() -> int:
        return threading.get_ident()

    @app.task
    def sync_thread(_: int) -> int:
        return threading.get_ident()

    loop_ident = loop_thread().result(timeout=WAIT)
    idents = {h.result(timeout=WAIT) for h in sync_thread.map(range(10))}
    assert loop_ident not in idents


def test_blocked_sync_task_does_not_block_async_tasks(app: offload.App) -> None:
    release = threading.Event()

    @app.task
    def blocking() -> None:
        release.wait(WAIT)

    @app.task
    async def quick() -> str:
        await asyncio.sleep(0)
        return "done"

    blocker = blocking()
    try:
        assert quick().result(timeout=1) == "done"
        assert not blocker.done()
    finally:
        release.set()
    blocker.result(timeout=WAIT)
