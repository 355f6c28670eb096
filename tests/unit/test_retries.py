"""Retries: the ``Backoff`` policy, ``retries=``, ``retry_on=``, ``Retry``, per-call override."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

import pytest

import offload
from helpers import WAIT, wait_until
from offload.testing import FakeClock, run_until_idle

State = offload.State

# -- Backoff ------------------------------------------------------------------


def test_backoff_is_exponential() -> None:
    backoff = offload.Backoff(base=1, factor=2, cap=300, jitter=False)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 32]
    assert offload.Backoff(base=0.5, factor=3, jitter=False).delay(3) == pytest.approx(4.5)


def test_backoff_is_capped() -> None:
    backoff = offload.Backoff(base=1, cap=10, jitter=False)
    assert backoff.delay(4) == 8
    assert backoff.delay(5) == 10
    assert backoff.delay(50) == 10
    assert backoff.delay(100_000) == 10  # no overflow for absurd retry counts


def test_factor_one_is_a_constant_delay() -> None:
    backoff = offload.Backoff(base=5, factor=1, jitter=False)
    assert {backoff.delay(n) for n in range(1, 20)} == {5}


@pytest.mark.parametrize("source", [0.0, 0.25, 0.5, 0.999999, 1.0])
def test_jitter_stays_between_half_and_all_of_the_delay(source: float) -> None:
    backoff = offload.Backoff(base=1, cap=300, jitter=True)
    for retry in range(1, 12):
        full = min(300, 2 ** (retry - 1))
        delay = backoff.delay(retry, jitter_source=lambda: source)
        assert 0.5 * full <= delay <= full


def test_jitter_spreads_the_delays() -> None:
    backoff = offload.Backoff(base=8, jitter=True)
    assert backoff.delay(1, jitter_source=lambda: 0.0) == 4
    assert backoff.delay(1, jitter_source=lambda: 1.0) == 8
    delays = {backoff.delay(1) for _ in range(50)}  # the real random source
    assert len(delays) > 1
    assert all(4 <= d <= 8 for d in delays)


def test_backoff_is_a_value() -> None:
    assert offload.Backoff(base=2, cap=60) == offload.Backoff(base=2, cap=60)
    assert hash(offload.Backoff()) == hash(offload.Backoff())
    with pytest.raises(AttributeError):
        offload.Backoff().base = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"base": -1}, "base"), ({"cap": -1}, "cap"), ({"factor": 0.5}, "factor")],
)
def test_backoff_validation(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.Backoff(**kwargs)  # type: ignore[arg-type]
    assert word in str(info.value)


# -- retries in an app ----------------------------------------------------------


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``; counts calls."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            calls = self.calls
        if calls <= self.failures:
            raise self.error(f"failure {calls}")
        return "ok"


NO_WAIT = offload.Backoff(base=60, cap=60, jitter=False)


def advance_through_retries(
    app: offload.App,
    handle: offload.Handle[object],
    clock: FakeClock,
    calls: Callable[[], int],
    times: int,
) -> None:
    """For each retry: see the handle wait in ``retrying`` until the clock reaches
    its backoff delay (``NO_WAIT``: 60 s), not a moment sooner, then move it there."""
    for _ in range(times):
        run_until_idle(app)  # the attempt that was due has run; the retry waits
        assert handle.state is State.RETRYING
        attempts = calls()
        clock.advance(59)
        run_until_idle(app)
        assert not handle.done()
        assert calls() == attempts, "retried before the backoff delay passed"
        clock.advance(1)


def test_fails_twice_then_succeeds_on_attempt_three(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    flaky = Flaky(failures=2)
    task = fake_clock_app.task(name="flaky", retries=2, backoff=NO_WAIT)(flaky)
    handle = task()
    advance_through_retries(fake_clock_app, handle, clock, lambda: flaky.calls, times=2)
    assert handle.result(timeout=WAIT) == "ok"
    assert flaky.calls == 3
    assert handle.state is State.SUCCEEDED


def test_retry_waits_for_the_backoff_delay(fake_clock_app: offload.App, clock: FakeClock) -> None:
    flaky = Flaky(failures=1)
    task = fake_clock_app.task(name="flaky", retries=1, backoff=NO_WAIT)(flaky)
    handle = task()
    run_until_idle(fake_clock_app)
    assert handle.state is State.RETRYING
    clock.advance(59)
    run_until_idle(fake_clock_app)
    with pytest.raises(offload.ResultTimeout):
        handle.result(timeout=0)  # 59 of 60 s: still waiting
    assert flaky.calls == 1
    clock.advance(1)
    run_until_idle(fake_clock_app)
    assert handle.result(timeout=0) == "ok"
    assert flaky.calls == 2


def explode_in_task() -> None:
    raise KeyError("the original error")


def test_after_the_last_attempt_the_task_error_is_raised_with_its_traceback(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    calls = []

    def always_fails() -> None:
        calls.append(1)
        explode_in_task()

    task = fake_clock_app.task(retries=2, backoff=NO_WAIT)(always_fails)
    handle = task()
    advance_through_retries(fake_clock_app, handle, clock, lambda: len(calls), times=2)
    with pytest.raises(KeyError, match="the original error") as info:
        handle.result(timeout=WAIT)
    assert len(calls) == 3
    assert handle.state is State.FAILED
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "always_fails" in frames
    assert "explode_in_task" in frames


def test_retry_on_limits_what_is_retried(fake_clock_app: offload.App) -> None:
    flaky = Flaky(failures=1, error=KeyError)
    task = fake_clock_app.task(name="flaky", retries=3, retry_on=(ValueError,))(flaky)
    with pytest.raises(KeyError):
        task().result(timeout=WAIT)
    assert flaky.calls == 1


def test_retry_on_retries_listed_types_and_subclasses(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    flaky = Flaky(failures=1, error=ConnectionRefusedError)  # an OSError
    task = fake_clock_app.task(name="flaky", retries=1, retry_on=OSError, backoff=NO_WAIT)(flaky)
    handle = task()
    advance_through_retries(fake_clock_app, handle, clock, lambda: flaky.calls, times=1)
    assert handle.result(timeout=WAIT) == "ok"
    assert flaky.calls == 2


def test_no_retries_by_default(fake_clock_app: offload.App) -> None:
    flaky = Flaky(failures=1)
    with pytest.raises(ConnectionError):
        fake_clock_app.task(name="flaky")(flaky)().result(timeout=WAIT)
    assert flaky.calls == 1


def test_raise_retry_asks_for_another_attempt_after_its_delay(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    calls = []

    @fake_clock_app.task(retries=3)
    def poll() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise offload.Retry(delay=30, reason="not ready")
        return "ready"

    handle = poll()
    run_until_idle(fake_clock_app)
    assert handle.state is State.RETRYING
    clock.advance(29)
    run_until_idle(fake_clock_app)
    with pytest.raises(offload.ResultTimeout):
        handle.result(timeout=0)
    assert len(calls) == 1
    clock.advance(1)
    run_until_idle(fake_clock_app)
    assert handle.result(timeout=0) == "ready"
    assert len(calls) == 2


def test_retry_without_retries_left_fails_with_retry(fake_clock_app: offload.App) -> None:
    @fake_clock_app.task
    def poll() -> None:
        raise offload.Retry(delay=5, reason="still not ready")

    with pytest.raises(offload.Retry, match="still not ready"):
        poll().result(timeout=WAIT)


def test_immediate_retries_do_not_stall(fake_clock_app: offload.App) -> None:
    """``Retry(delay=0)``: the next attempt is due at once; every call must finish."""
    counts: dict[int, int] = {}
    lock = threading.Lock()

    @fake_clock_app.task(retries=3)
    def again(i: int) -> int:
        with lock:
            counts[i] = counts.get(i, 0) + 1
            attempt = counts[i]
        if attempt < 3:
            raise offload.Retry(delay=0)
        return i

    handles = again.map(range(100))
    _, not_done = offload.wait(handles, timeout=WAIT)
    assert not not_done, f"{len(not_done)} calls never finished: {list(not_done)[:3]}"
    assert [h.result() for h in handles] == list(range(100))


def test_per_call_retries_override(fake_clock_app: offload.App, clock: FakeClock) -> None:
    flaky = Flaky(failures=1)
    task = fake_clock_app.task(name="flaky", retries=5, backoff=NO_WAIT)(flaky)
    with pytest.raises(ConnectionError):
        task.options(retries=0)().result(timeout=WAIT)
    assert flaky.calls == 1

    flaky_too = Flaky(failures=2)
    none_by_default = fake_clock_app.task(name="flaky-too", backoff=NO_WAIT)(flaky_too)
    handle = none_by_default.options(retries=2)()
    advance_through_retries(fake_clock_app, handle, clock, lambda: flaky_too.calls, times=2)
    assert handle.result(timeout=WAIT) == "ok"
    assert flaky_too.calls == 3


def test_a_retry_is_logged_as_a_warning(
    fake_clock_app: offload.App, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="offload")
    flaky = Flaky(failures=1)
    handle = fake_clock_app.task(name="flaky", retries=1, backoff=NO_WAIT)(flaky)()
    advance_through_retries(fake_clock_app, handle, clock, lambda: flaky.calls, times=1)
    assert handle.result(timeout=WAIT) == "ok"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "flaky" in warnings[0].getMessage()
    assert "retrying" in warnings[0].getMessage()


def test_shutdown_cancelling_pending_calls_cancels_a_retrying_one(
    make_app: Callable[..., offload.App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(clock=FakeClock())
    flaky = Flaky(failures=1)
    handle = app.task(name="flaky", retries=1, backoff=NO_WAIT)(flaky)()
    assert wait_until(lambda: handle.state is State.RETRYING)
    app.shutdown(wait=False, cancel_pending=True)
    assert handle.done()
    assert handle.state is State.CANCELLED
    assert handle.cancelled()
    with pytest.raises(offload.TaskCancelled):
        handle.result()
