"""Rate and concurrency limits on the in-process app, with time as a fake clock.

The same middleware and the same broker capability run on every broker (the
contract suite holds the brokers to it; tests/e2e/test_limits_e2e.py runs
real worker processes). Here: the options, and what a user sees of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import offload
from offload import RateLimit
from offload._limits import KEY_META
from offload._message import Delivery, Message, new_id
from offload.testing import FakeClock, run_until_idle


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> Iterator[offload.App]:
    app = offload.App(clock=clock, threads=8)
    yield app
    app.shutdown(wait=False, cancel_pending=True)


def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (real time) for ``condition``; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


# -- declaring ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n", "per"),
    [("20/s", 20, 1.0), ("100/m", 100, 60.0), ("5/h", 5, 3600.0), ("10/30s", 10, 30.0)],
)
def test_a_rate_is_written_calls_per_unit(text: str, n: int, per: float) -> None:
    assert RateLimit.parse(text) == RateLimit(n, per=per)
    assert RateLimit.parse(text).interval == per / n


@pytest.mark.parametrize("text", ["20", "20/x", "/s", "0/s", "-1/s", "1.5/s"])
def test_a_malformed_rate_is_refused_saying_how_to_write_one(app: offload.App, text: str) -> None:
    with pytest.raises(offload.ConfigurationError, match=r"'20/s'|1 or more"):
        app.task(rate_limit=text)(lambda: None)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": True},
        {"rate_limit": 5},
        {"rate_limit": "1/s", "limit_key": "nope"},
        {"limit_key": "x"},
        {"rate_limit": "1/s", "limit_key": 3},
    ],
)
def test_wrong_limit_options_are_refused_at_the_declaration(
    app: offload.App, options: dict[str, Any]
) -> None:
    def work(x: int) -> int:
        return x

    with pytest.raises(offload.ConfigurationError):
        app.task(**options)(work)


def test_rate_limit_parts_are_checked() -> None:
    for bad in ({"n": 0}, {"n": 1, "per": 0}, {"n": 1, "burst": -1}, {"n": 1, "per": "1"}):
        with pytest.raises(offload.ConfigurationError):
            RateLimit(**bad)


def test_a_limit_key_is_computed_at_the_call_and_carried_in_meta(app: offload.App) -> None:
    seen: list[str | None] = []

    @app.task(rate_limit="100/s", limit_key="customer")
    def work(order: int, customer: str = "anon") -> None:
        seen.append(offload.current().meta.get(KEY_META))

    work(1, customer="acme").result(timeout=10)
    work(2).result(timeout=10)
    assert seen == ["acme", "anon"]


def test_a_limit_key_that_is_no_short_text_is_refused_at_the_call(app: offload.App) -> None:
    @app.task(concurrency=1, limit_key=lambda *args: args[0])
    def work(value: object) -> None: ...

    with pytest.raises(offload.ConfigurationError, match="limit key"):
        work(object())
    with pytest.raises(offload.ConfigurationError, match="at most 200"):
        work("x" * 201)


# -- rates --------------------------------------------------------------------------


def test_a_rate_spaces_calls_and_the_wait_spends_no_attempt(
    app: offload.App, clock: FakeClock
) -> None:
    ran: list[tuple[float, int]] = []

    @app.task(rate_limit=RateLimit(2, per=1, burst=0))
    def work(i: int) -> None:
        ran.append((clock.now(), offload.current().attempt))

    handles = work.map(range(5))
    start = clock.now()
    for step in range(5):
        run_until_idle(app)
        assert len(ran) == step + 1, f"after {step * 0.5} s"
        clock.advance(0.5)
    assert all(h.result(timeout=10) is None for h in handles)
    assert [round(t - start, 3) for t, _ in ran] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert {attempt for _, attempt in ran} == {1}, "waiting spent no attempt"


def test_by_default_one_call_more_may_go_at_once(app: offload.App, clock: FakeClock) -> None:
    ran: list[float] = []

    @app.task(rate_limit="2/s")
    def work(i: int) -> None:
        ran.append(clock.now())

    work.map(range(5))
    start = clock.now()
    for _ in range(4):
        run_until_idle(app)
        clock.advance(0.5)
    assert [round(t - start, 3) for t in ran] == [0.0, 0.0, 0.5, 1.0, 1.5]


def test_a_burst_lets_that_many_more_go_at_once(app: offload.App, clock: FakeClock) -> None:
    ran: list[int] = []

    @app.task(rate_limit=RateLimit(1, per=10, burst=2))
    def work(i: int) -> None:
        ran.append(i)

    work.map(range(5))
    run_until_idle(app)
    assert len(ran) == 3
    clock.advance(10)
    run_until_idle(app)
    assert len(ran) == 4


def test_a_keyed_rate_holds_per_key(app: offload.App, clock: FakeClock) -> None:
    ran: list[str] = []

    @app.task(rate_limit=RateLimit(1, per=60, burst=0), limit_key=lambda customer, n: customer)
    def work(customer: str, n: int) -> None:
        ran.append(customer)

    for n in range(3):
        for customer in ("a", "b"):
            work(customer, n)
    run_until_idle(app)
    assert sorted(ran) == ["a", "b"], "one call per key now, the others wait"
    clock.advance(60)
    run_until_idle(app)
    assert sorted(ran) == ["a", "a", "b", "b"]


def test_an_unlimited_task_never_meets_the_limiter(app: offload.App) -> None:
    @app.task(rate_limit="1/h")
    def limited() -> None: ...

    @app.task
    def free() -> None: ...

    runner = app._runner
    for task, chained in ((free, False), (limited, True)):
        message = Message(new_id(), task.name, (), {}, "default", 0)
        call = runner.begin(Delivery(message, 1, float("inf")))
        assert call is not None
        assert (call.chain is not None) is chained, task.name


# -- concurrency --------------------------------------------------------------------


def test_concurrency_holds_and_frees_slots_on_any_outcome(
    app: offload.App, clock: FakeClock
) -> None:
    running, most = 0, 0
    lock = threading.Lock()
    go = threading.Event()

    @app.task(concurrency=2)
    def work(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        go.wait(10)
        with lock:
            running -= 1
        if i % 2:
            raise ValueError(i)  # a failure frees its slot too
        return i

    handles = work.map(range(6))
    until(lambda: running == 2, "two calls running")
    clock.advance(1)
    time.sleep(0.05)  # real time for a third call to be refused (it must not start)
    assert running == 2
    go.set()
    for _ in range(20):
        clock.advance(1)
        if all(h.done() for h in handles):
            break
        time.sleep(0.05)
    until(lambda: all(h.done() for h in handles), "every call done")
    assert most == 2
    assert [h.exception() is None for h in handles] == [True, False] * 3


def test_a_higher_priority_call_waits_for_the_limit_like_the_others(
    app: offload.App, clock: FakeClock
) -> None:
    go = threading.Event()
    order: list[str] = []

    @app.task(concurrency=1)
    def work(name: str) -> None:
        order.append(name)
        go.wait(10)

    first = work("first")
    until(lambda: order == ["first"], "the first call running")
    urgent = work.options(priority=9)("urgent")
    until(lambda: urgent.state is offload.State.QUEUED, "the urgent call refused, waiting")
    clock.advance(5)
    time.sleep(0.05)
    assert order == ["first"], "priority does not jump a limit"
    go.set()
    first.result(timeout=10)
    until(lambda: (clock.advance(1), urgent.done())[1], "the urgent call run")
    assert order == ["first", "urgent"]


def test_an_async_task_is_limited_too(app: offload.App, clock: FakeClock) -> None:
    ran: list[int] = []

    @app.task(rate_limit=RateLimit(1, per=60, burst=0))
    async def work(i: int) -> None:
        ran.append(i)

    handles = work.map(range(2))
    handles[0].result(timeout=10)
    run_until_idle(app)
    assert ran == [0]
    clock.advance(60)
    handles[1].result(timeout=10)
    assert ran == [0, 1]


def test_a_call_that_waits_for_a_slot_spends_no_token(app: offload.App, clock: FakeClock) -> None:
    go = threading.Event()
    ran: list[str] = []

    @app.task(concurrency=1, rate_limit=RateLimit(1, per=3600, burst=1))  # 2 calls, then 1/h
    def work(name: str) -> None:
        ran.append(name)
        go.wait(10)

    first = work("first")
    until(lambda: ran == ["first"], "the first call running")
    second = work("second")
    until(lambda: second.state is offload.State.QUEUED, "the second call waiting for the slot")
    go.set()
    first.result(timeout=10)
    clock.advance(1)  # far less than the hour a spent token would cost
    second.result(timeout=10)
    assert ran == ["first", "second"]
