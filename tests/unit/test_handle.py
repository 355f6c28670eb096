"""``Handle``: states, results, cancellation, waiting, asyncio, unretrieved errors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
import time
from collections.abc import Callable

import pytest

import offload
from helpers import WAIT, wait_until
from offload._brokers import Inspector
from offload.testing import FakeClock, run_until_idle

State = offload.State


class Gate:
    """A task body that signals when it starts and waits until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs = 0

    def __call__(self, value: int = 0) -> int:
        self.runs += 1
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the gate"
        return value


def busy_single_thread_app(
    make_app: Callable[..., offload.App],
) -> tuple[offload.App, Gate, offload.Handle[int]]:
    """An app with one thread, held by a running call."""
    app = make_app(threads=1)
    gate = Gate()
    running = app.task(name="gate")(gate)()
    assert gate.started.wait(WAIT)
    return app, gate, running


# -- states -------------------------------------------------------------------


def test_running_then_succeeded(app: offload.App) -> None:
    gate = Gate()
    handle = app.task(name="gate")(gate)(5)
    assert gate.started.wait(WAIT)
    assert handle.state is State.RUNNING
    assert handle.running()
    assert not handle.done()
    gate.release.set()
    assert handle.result(timeout=WAIT) == 5
    assert handle.state is State.SUCCEEDED
    assert handle.done()


def test_failed(app: offload.App) -> None:
    @app.task
    def fails() -> None:
        raise KeyError("missing")

    handle = fails()
    with pytest.raises(KeyError, match="missing"):
        handle.result(timeout=WAIT)
    assert handle.state is State.FAILED
    assert handle.done()


def test_a_call_waiting_for_a_thread_is_queued(make_app: Callable[..., offload.App]) -> None:
    app, gate, running = busy_single_thread_app(make_app)
    waiting = app.task(name="gate")(gate)(2)
    time.sleep(0.05)  # give the worker every chance to pick it up
    assert running.state is State.RUNNING
    assert waiting.state is State.QUEUED, "the only thread is busy: the second call waits"
    assert not waiting.running()
    gate.release.set()
    assert waiting.result(timeout=WAIT) == 2


def test_cancel_a_queued_call(make_app: Callable[..., offload.App]) -> None:
    app, gate, running = busy_single_thread_app(make_app)
    waiting = app.task(name="gate")(gate)(2)
    time.sleep(0.05)
    assert waiting.cancel() is True
    assert waiting.state is State.CANCELLED
    assert waiting.cancelled()
    assert waiting.done()
    gate.release.set()
    assert running.result(timeout=WAIT) == 0
    with pytest.raises(offload.TaskCancelled) as info:
        waiting.result(timeout=WAIT)
    assert isinstance(info.value, concurrent.futures.CancelledError)
    run_until_idle(app)  # whatever was going to run has run
    assert gate.runs == 1, "a cancelled call must never run"


def test_cancel_a_scheduled_call(fake_clock_app: offload.App, clock: FakeClock) -> None:
    ran = []
    work = fake_clock_app.task(name="append")(ran.append)
    handle = work.options(delay=60)(1)
    assert handle.state is State.QUEUED
    assert handle.cancel() is True
    assert handle.state is State.CANCELLED
    clock.advance(61)
    later = work(2)  # a call after the cancelled one's due time: the worker got past it
    assert later.result(timeout=WAIT) is None
    assert ran == [2]
    with pytest.raises(offload.TaskCancelled, match="cancelled"):
        handle.result()


def test_exception_of_a_cancelled_call_is_task_cancelled(
    fake_clock_app: offload.App,
) -> None:
    handle = fake_clock_app.task(name="print")(print).options(delay=60)("never")
    assert handle.cancel()
    with pytest.raises(offload.TaskCancelled):
        handle.exception(timeout=WAIT)


def test_cancel_a_running_thread_call_records_it_cancelled_and_tells_the_task(
    app: offload.App,
) -> None:
    told = threading.Event()

    @app.task(name="cooperative")
    def cooperative() -> int:
        gate_started.set()
        while not offload.current().cancelled:
            time.sleep(0.005)
        told.set()
        offload.current().check_cancelled()  # raises offload.Cancelled: the task stops
        return 3

    gate_started = threading.Event()
    handle = cooperative()
    assert gate_started.wait(WAIT)
    assert handle.cancel() is True, "a thread is told, and its call recorded cancelled at once"
    assert handle.cancelled() and handle.state is State.CANCELLED
    assert told.wait(WAIT), "the task saw offload.current().cancelled"
    with pytest.raises(offload.TaskCancelled):
        handle.result(timeout=WAIT)


def test_cancel_a_finished_call_returns_false(app: offload.App) -> None:
    handle = app.task(abs)(-3)
    assert handle.result(timeout=WAIT) == 3
    assert handle.cancel() is False
    assert handle.state is State.SUCCEEDED


def test_retrying(fake_clock_app: offload.App, clock: FakeClock) -> None:
    attempts = []

    @fake_clock_app.task(retries=1, backoff=offload.Backoff(base=60, jitter=False))
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("try again")
        return "ok"

    handle = flaky()
    assert wait_until(lambda: handle.state is State.RETRYING)
    assert not handle.done()
    assert not handle.running(), "waiting for its next attempt is not running"
    clock.advance(60)
    assert handle.result(timeout=WAIT) == "ok"
    assert handle.state is State.SUCCEEDED


def test_a_call_waiting_to_retry_can_be_cancelled(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    attempts = []

    @fake_clock_app.task(retries=1, backoff=offload.Backoff(base=60, jitter=False))
    def flaky() -> str:
        attempts.append(1)
        raise ConnectionError("try again")

    handle = flaky()
    assert wait_until(lambda: handle.state is State.RETRYING)
    assert handle.cancel() is True
    assert handle.cancel() is True, "cancelling twice is harmless"
    assert handle.state is State.CANCELLED
    clock.advance(120)
    broker = fake_clock_app.broker
    assert isinstance(broker.inspector, Inspector)

    def unfinished() -> int:
        return sum(
            n
            for queue in broker.inspector.counts().values()
            for state, n in queue.items()
            if not state.finished
        )

    assert wait_until(lambda: unfinished() == 0), "the cancelled retry leaves the broker"
    assert attempts == [1], "the cancelled retry must not run"


def test_state_is_a_string_enum(app: offload.App) -> None:
    handle = app.task(abs)(-1)
    handle.result(timeout=WAIT)
    assert handle.state == "succeeded"
    assert str(handle.state) == "succeeded"
    assert {s.value for s in State} == {
        "queued",
        "running",
        "retrying",
        "succeeded",
        "failed",
        "cancelled",
    }


# -- results and exceptions ---------------------------------------------------


def test_exception_returns_the_error_or_none(app: offload.App) -> None:
    @app.task
    def divide(a: int, b: int) -> float:
        return a / b

    assert divide(1, 0).exception(timeout=WAIT).__class__ is ZeroDivisionError
    assert divide(4, 2).exception(timeout=WAIT) is None


def test_result_timeout_on_a_blocked_call(app: offload.App) -> None:
    gate = Gate()
    handle = app.task(name="gate")(gate)()
    try:
        started = time.monotonic()
        with pytest.raises(offload.ResultTimeout) as info:
            handle.result(timeout=0.01)
        assert time.monotonic() - started < 1.0
        assert isinstance(info.value, concurrent.futures.TimeoutError)
        assert isinstance(info.value, offload.OffloadError)
        assert "gate" in str(info.value)
        assert handle.id in str(info.value)
        with pytest.raises(offload.ResultTimeout):
            handle.exception(timeout=0.01)
        assert not handle.done()  # the task goes on
    finally:
        gate.release.set()
    assert handle.result(timeout=WAIT) == 0


def test_add_done_callback_is_called_with_the_handle(app: offload.App) -> None:
    gate = Gate()
    handle = app.task(name="gate")(gate)(7)
    seen: list[tuple[object, int]] = []
    called = threading.Event()

    def callback(future: concurrent.futures.Future[int]) -> None:
        seen.append((future, future.result()))
        called.set()

    handle.add_done_callback(callback)
    assert not called.is_set()
    gate.release.set()
    assert called.wait(WAIT)
    assert seen == [(handle, 7)]
    # On a finished handle, the callback runs at once, in the caller's thread.
    late: list[object] = []
    handle.add_done_callback(late.append)
    assert late == [handle]


def test_ids_are_unique_and_sortable_by_time(app: offload.App) -> None:
    work = app.task(abs)
    first = [work(i) for i in range(500)]
    time.sleep(0.005)
    later = work(0)
    ids = [h.id for h in first]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and i for i in ids)
    assert sorted(ids) == ids, "ids sort in the order the calls were made"
    assert later.id > max(ids)
    offload.wait([*first, later], timeout=WAIT)


# -- waiting on many ----------------------------------------------------------


def test_stdlib_wait_and_as_completed_accept_handles(app: offload.App) -> None:
    gate = Gate()
    slow = app.task(name="gate")(gate)(1)
    fast = app.task(abs)(-2)
    done, not_done = concurrent.futures.wait(
        [slow, fast], timeout=WAIT, return_when=concurrent.futures.FIRST_COMPLETED
    )
    assert done == {fast}
    assert not_done == {slow}
    gate.release.set()
    finished = list(concurrent.futures.as_completed([slow, fast], timeout=WAIT))
    assert set(finished) == {slow, fast}
    assert [h.result() for h in (slow, fast)] == [1, 2]


def test_offload_wait(app: offload.App) -> None:
    gate = Gate()
    slow = app.task(name="gate")(gate)(1)
    fast = app.task(abs)(-2)
    done, not_done = offload.wait([slow, fast], return_when="FIRST_COMPLETED", timeout=WAIT)
    assert (done, not_done) == ({fast}, {slow})
    done, not_done = offload.wait([slow, fast], timeout=0.01)
    assert not_done == {slow}
    gate.release.set()
    done, not_done = offload.wait([slow, fast], timeout=WAIT)
    assert done == {slow, fast}
    assert not not_done


def test_offload_as_completed_yields_fastest_first(app: offload.App) -> None:
    gate = Gate()
    slow = app.task(name="gate")(gate)(1)
    fast = app.task(abs)(-2)
    order = []
    for handle in offload.as_completed([slow, fast], timeout=WAIT):
        order.append(handle)
        gate.release.set()
    assert order == [fast, slow]


def test_offload_as_completed_times_out(app: offload.App) -> None:
    gate = Gate()
    slow = app.task(name="gate")(gate)(1)
    try:
        with pytest.raises(concurrent.futures.TimeoutError):
            list(offload.as_completed([slow], timeout=0.02))
    finally:
        gate.release.set()


def test_offload_gather(app: offload.App) -> None:
    work = app.task(abs)

    @app.task
    def fails() -> None:
        raise ValueError("bad")

    async def main() -> tuple[list[object], list[object]]:
        results = await offload.gather(work(-1), work(-2), work(-3))
        mixed = await offload.gather(work(-4), fails(), return_exceptions=True)
        return results, mixed

    results, mixed = asyncio.run(main())
    assert results == [1, 2, 3]
    assert mixed[0] == 4
    assert isinstance(mixed[1], ValueError)


def test_offload_gather_raises_the_first_error(app: offload.App) -> None:
    @app.task
    def fails() -> None:
        raise ValueError("bad")

    async def main() -> None:
        await offload.gather(app.task(abs)(1), fails())

    with pytest.raises(ValueError, match="bad"):
        asyncio.run(main())


# -- asyncio ------------------------------------------------------------------


def test_await_does_not_block_the_event_loop(app: offload.App) -> None:
    gate = Gate()
    work = app.task(name="gate")(gate)

    async def main() -> tuple[int, int]:
        handle = work(42)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while ticks < 5:  # only runs if the loop is free while `await handle` waits
                ticks += 1
                await asyncio.sleep(0.005)
            gate.release.set()

        result, _ = await asyncio.wait_for(asyncio.gather(handle, ticker()), WAIT)
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result == 42
    assert ticks == 5


def test_await_raises_the_task_error(app: offload.App) -> None:
    @app.task
    def fails() -> None:
        raise LookupError("nope")

    async def main() -> None:
        await fails()

    with pytest.raises(LookupError, match="nope"):
        asyncio.run(main())


# -- exceptions nobody retrieved ----------------------------------------------


def never_retrieved(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "never retrieved" in r.getMessage()]


def failing_handle(app: offload.App) -> offload.Handle[None]:
    @app.task
    def doomed() -> None:
        raise RuntimeError("lost in the background")

    handle = doomed()
    offload.wait([handle], timeout=WAIT)  # wait without retrieving the exception
    assert handle.state is State.FAILED
    return handle


def test_unretrieved_exception_is_logged_once_at_garbage_collection(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="offload")
    handle = failing_handle(app)
    task_id = handle.id
    assert not never_retrieved(caplog), "logged before the handle was dropped"
    del handle
    gc.collect()
    gc.collect()
    records = never_retrieved(caplog)
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert task_id in record.getMessage()
    assert "doomed" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "lost in the background" in caplog.text
    assert "doomed" in caplog.text  # the traceback shows where it failed


@pytest.mark.parametrize("retrieve", ["result", "exception", "await"])
def test_retrieved_exception_is_not_logged(
    app: offload.App, caplog: pytest.LogCaptureFixture, retrieve: str
) -> None:
    caplog.set_level(logging.ERROR, logger="offload")
    handle = failing_handle(app)
    if retrieve == "result":
        with pytest.raises(RuntimeError):
            handle.result()
    elif retrieve == "exception":
        assert isinstance(handle.exception(), RuntimeError)
    else:

        async def main(awaited: offload.Handle[None]) -> None:
            await awaited

        with pytest.raises(RuntimeError):
            asyncio.run(main(handle))
    del handle
    gc.collect()
    assert not never_retrieved(caplog)


def test_successful_handle_is_not_logged(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="offload")
    handle = app.task(abs)(-1)
    offload.wait([handle], timeout=WAIT)
    del handle
    gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_running_call_survives_the_clock_jumping_past_its_lease(
    fake_clock_app: offload.App, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Time that jumps (a fake clock, a laptop waking up) must not run a call twice."""
    gate = Gate()
    handle = fake_clock_app.task(name="gate")(gate)(9)
    assert gate.started.wait(WAIT)
    for _ in range(20):
        clock.advance(3600)
        time.sleep(0.005)
    gate.release.set()
    assert handle.result(timeout=WAIT) == 9
    assert gate.runs == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- waiting while the call ends (a handle makes its Future machinery lazily) ----


def _waiters() -> list[Callable[[offload.Handle[int]], object]]:
    return [
        lambda h: h.result(WAIT),
        lambda h: h.exception(WAIT),
        lambda h: concurrent.futures.wait([h], timeout=WAIT),
        lambda h: list(concurrent.futures.as_completed([h], timeout=WAIT)),
    ]


@pytest.mark.parametrize("index", range(4), ids=["result", "exception", "wait", "as_completed"])
def test_a_waiter_arriving_as_the_call_ends_is_never_missed(app: offload.App, index: int) -> None:
    # Many short calls, each waited on from another thread at about the moment
    # it ends: every wait must return (none may sleep through the settle).
    waiter = _waiters()[index]
    task = app.task(abs)
    for i in range(300):
        handle = task(-i)
        thread = threading.Thread(target=waiter, args=(handle,))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive(), f"call {i}: the waiter missed the end of the call"
        assert handle.result(0) == i


def test_a_callback_added_as_the_call_ends_runs_exactly_once(app: offload.App) -> None:
    task = app.task(abs)
    for i in range(300):
        calls: list[int] = []
        handle = task(-i)
        handle.add_done_callback(lambda h, calls=calls: calls.append(h.result()))
        assert wait_until(lambda calls=calls: bool(calls)), f"the callback of call {i} never ran"
        assert calls == [i]


def test_a_finished_handle_holds_few_objects_for_the_garbage_collector(
    app: offload.App,
) -> None:
    # The collector walks every live handle on each full collection; a bare
    # Future costs 11 tracked objects (its Condition alone is 8).
    task = app.task(abs)
    task(1).result(WAIT)

    def tracked_per_handle() -> float:
        gc.collect()
        before = len(gc.get_objects())
        handles = [task(i) for i in range(2000)]
        for handle in handles:
            handle.result(WAIT)
        gc.collect()
        return (len(gc.get_objects()) - before) / len(handles)

    # The count is of the whole process: threads that earlier tests' apps
    # left finishing allocate meanwhile. They only ever add, so the least of
    # three measures is the handles' own cost.
    per_handle = min(tracked_per_handle() for _ in range(3))
    assert per_handle <= 4, f"{per_handle:.1f} tracked objects per finished handle"


def test_waiting_on_handles_while_one_is_cancelled_never_deadlocks(
    make_app: Callable[..., offload.App],
) -> None:
    # stdlib wait() holds one handle's condition while it makes the next
    # handle's (``_AcquireFutures``, done here by hand to fix the order);
    # cancel() holds offload's transition lock while it takes a condition.
    # The two must never wait for each other.
    app, gate, running = busy_single_thread_app(make_app)
    task = app.task(abs)
    first, second = task(1), task(2)
    cancelling = threading.Thread(target=first.cancel)
    made: list[object] = []

    def like_stdlib_wait() -> None:
        with first._condition:
            cancelling.start()
            time.sleep(0.05)  # cancel() now holds the transition lock, waiting for us
            with second._condition:
                made.append(second._condition)

    waiter = threading.Thread(target=like_stdlib_wait, daemon=True)
    waiter.start()
    waiter.join(WAIT)
    assert not waiter.is_alive(), "wait() and cancel() deadlocked"
    cancelling.join(WAIT)
    assert first.cancelled()
    assert made
    gate.release.set()
    assert second.result(WAIT) == 2
    assert running.result(WAIT) == 0


# -- result() waits on a bare lock until the Future machinery is needed ------------------


def _blocked_results(
    handle: offload.Handle[int], threads: int
) -> tuple[list[object], list[threading.Thread]]:
    """``threads`` threads blocked in ``handle.result()``; what each got (a value or an error)."""
    got: list[object] = []

    def wait() -> None:
        try:
            # Longer than _joined waits: a waiter never woken shows as a thread alive.
            got.append(handle.result(3 * WAIT))
        except BaseException as error:  # the test reads it
            got.append(error)

    waiting = [threading.Thread(target=wait) for _ in range(threads)]
    for thread in waiting:
        thread.start()
    assert wait_until(lambda: "_latch" in vars(handle)), "no waiter blocked on the latch"
    return got, waiting


def _joined(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a thread blocked in result() was never woken"


def test_every_thread_blocked_in_result_gets_the_value(app: offload.App) -> None:
    gate = Gate()
    handle = app.task(name="gate")(gate)(11)
    got, waiting = _blocked_results(handle, 4)
    with pytest.raises(offload.ResultTimeout):
        handle.result(timeout=0.01)  # a waiter that gives up leaves the others waiting
    gate.release.set()
    _joined(waiting)
    assert got == [11, 11, 11, 11]
    assert "_latch" not in vars(handle)


def test_a_thread_blocked_in_result_gets_the_task_error(app: offload.App) -> None:
    gate = Gate()

    def fails() -> int:
        gate()
        raise KeyError("boom")

    handle = app.task(name="fails")(fails)()
    got, waiting = _blocked_results(handle, 2)
    gate.release.set()
    _joined(waiting)
    assert [type(error) for error in got] == [KeyError, KeyError]


def test_cancelling_a_queued_call_wakes_threads_blocked_in_result(
    make_app: Callable[..., offload.App],
) -> None:
    app, gate, running = busy_single_thread_app(make_app)
    queued = app.task(name="later")(abs)(-1)
    got, waiting = _blocked_results(queued, 2)
    assert queued.cancel()
    _joined(waiting)
    assert [type(error) for error in got] == [offload.TaskCancelled] * 2
    gate.release.set()
    assert running.result(WAIT) == 0


def test_a_blocked_result_is_woken_after_the_future_machinery_was_made(app: offload.App) -> None:
    # A thread waits on the latch; then stdlib wait() and a callback make the
    # Future's Condition, so the call ends through Future.set_result: the latch
    # must be opened there too.
    gate = Gate()
    handle = app.task(name="gate")(gate)(3)
    got, waiting = _blocked_results(handle, 1)
    called: list[int] = []
    handle.add_done_callback(lambda h: called.append(h.result()))
    assert "_condition" in vars(handle)
    gate.release.set()
    _joined(waiting)
    assert got == [3]
    assert called == [3]
