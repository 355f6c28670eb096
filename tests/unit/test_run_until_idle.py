"""``offload.testing.run_until_idle``: burst mode, so tests assert exactly instead of sleeping.

On the memory broker here; tests/e2e/durable/test_burst.py runs it on every durable broker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import offload
from offload.testing import FakeClock, run_until_idle


@pytest.fixture
def clocked() -> Iterator[tuple[offload.App, FakeClock]]:
    clock = FakeClock()
    app = offload.App(clock=clock, name="test-idle")
    try:
        yield app, clock
    finally:
        app.shutdown(wait=False, cancel_pending=True)


def test_an_app_with_nothing_to_do_is_idle_at_once(app: offload.App) -> None:
    run_until_idle(app, timeout=1)


def test_every_due_call_has_finished_when_it_returns(app: offload.App) -> None:
    seen: list[int] = []

    @app.task
    def record(x: int) -> int:
        seen.append(x)
        return x * 2

    handles = record.map(range(50))
    run_until_idle(app)
    assert all(handle.done() for handle in handles)
    assert sorted(seen) == list(range(50))
    assert [handle.result(timeout=0) for handle in handles] == [x * 2 for x in range(50)]


def test_a_call_for_later_is_left_alone_until_the_clock_reaches_it(
    clocked: tuple[offload.App, FakeClock],
) -> None:
    app, clock = clocked
    seen: list[str] = []

    @app.task
    def remember(what: str) -> None:
        seen.append(what)

    later = remember.options(delay=60)("later")
    now = remember("now")
    run_until_idle(app)
    assert now.done() and not later.done()
    assert seen == ["now"]

    clock.advance(59)
    run_until_idle(app)
    assert seen == ["now"]

    clock.advance(1)
    run_until_idle(app)
    assert later.done() and seen == ["now", "later"]


def test_a_retry_waits_for_its_backoff_on_the_fake_clock(
    clocked: tuple[offload.App, FakeClock],
) -> None:
    app, clock = clocked
    attempts: list[int] = []

    @app.task(retries=2, backoff=offload.Backoff(base=30, jitter=False))
    def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return "up"

    handle = flaky()
    run_until_idle(app)
    assert attempts == [1] and not handle.done()
    clock.advance(30)
    run_until_idle(app)
    assert attempts == [1, 2] and not handle.done()
    clock.advance(60)
    run_until_idle(app)
    assert handle.result(timeout=0) == "up"


def test_a_call_still_running_at_the_timeout_is_named(app: offload.App) -> None:
    release = threading.Event()

    @app.task(name="tests.stuck")
    def stuck() -> None:
        release.wait(10)

    handle = stuck()
    try:
        with pytest.raises(TimeoutError, match=r"tests\.stuck .*\(running\)") as info:
            run_until_idle(app, timeout=0.05)
        assert handle.id in str(info.value)
    finally:
        release.set()
    run_until_idle(app)
    assert handle.done()
