"""``@offload.task`` / ``@app.task``: declaring, calling, options, map, bad inputs."""

from __future__ import annotations

import asyncio
import inspect
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import offload
from helpers import WAIT, wait_until
from offload.testing import FakeClock, run_until_idle


@pytest.fixture
def default_app() -> Iterator[None]:
    """Tests of ``offload.task`` itself use the default app; stop it after."""
    yield
    offload.shutdown(wait=False, cancel_pending=True)


def multiply(x: int, factor: int = 2) -> int:
    """Multiply ``x`` by ``factor``."""
    return x * factor


# -- declaring ----------------------------------------------------------------


def test_bare_decorator_runs_in_the_background(default_app: None) -> None:
    @offload.task
    def work(x: int) -> int:
        return x * x

    handle = work(3)
    assert isinstance(handle, offload.Handle)
    assert handle.result(timeout=WAIT) == 9


def test_decorator_with_options(default_app: None) -> None:
    @offload.task(retries=2, timeout=5, name="custom.name", queue="default")
    def work(x: int) -> int:
        return x + 1

    assert isinstance(work, offload.Task)
    assert work.name == "custom.name"
    assert work(1).result(timeout=WAIT) == 2


def test_default_app_is_looked_up_at_call_time(default_app: None) -> None:
    @offload.task
    def work() -> str:
        return threading.current_thread().name

    assert work().result(timeout=WAIT) != threading.current_thread().name
    offload.shutdown()
    # After a shutdown, the next call starts a new default app.
    assert work().result(timeout=WAIT) != threading.current_thread().name


def test_app_task_bare_and_with_options(app: offload.App) -> None:
    bare = app.task(multiply)
    configured = app.task(retries=1)(multiply)
    assert bare(4).result(timeout=WAIT) == 8
    assert configured(4, factor=3).result(timeout=WAIT) == 12


def test_metadata_and_signature_are_kept(app: offload.App) -> None:
    work = app.task(multiply)
    assert work.__name__ == "multiply"
    assert work.__qualname__ == "multiply"
    assert work.__doc__ == "Multiply ``x`` by ``factor``."
    assert work.__module__ == __name__
    assert work.__wrapped__ is multiply
    assert inspect.signature(work) == inspect.signature(multiply)
    assert str(inspect.signature(work)) == "(x: 'int', factor: 'int' = 2) -> 'int'"


def test_default_name_is_module_and_qualname(app: offload.App) -> None:
    assert app.task(multiply).name == f"{__name__}.multiply"


# -- calling ------------------------------------------------------------------


def test_call_returns_a_handle_at_once(app: offload.App) -> None:
    release = threading.Event()

    @app.task
    def work(x: int) -> int:
        release.wait(WAIT)
        return x * 2

    handle = work(3)  # returns although the task is blocked
    assert isinstance(handle, offload.Handle)
    assert not handle.done()
    release.set()
    assert handle.result(timeout=WAIT) == 6


def test_fn_runs_inline_in_the_calling_thread(app: offload.App) -> None:
    @app.task
    def where(x: int) -> tuple[int, str]:
        return x, threading.current_thread().name

    assert where.fn(3) == (3, threading.current_thread().name)
    value, thread = where(3).result(timeout=WAIT)
    assert value == 3
    assert thread != threading.current_thread().name


def test_delay_is_an_alias_of_calling(app: offload.App) -> None:
    work = app.task(multiply)
    handle = work.delay(3, factor=5)
    assert isinstance(handle, offload.Handle)
    assert handle.result(timeout=WAIT) == 15


def test_keyword_arguments_reach_the_function(app: offload.App) -> None:
    @app.task
    def echo(*args: object, **kwargs: object) -> tuple[object, object]:
        return args, kwargs

    # Names that look like options stay the user's arguments.
    handle = echo(1, timeout=3, retries=4, queue="q")
    assert handle.result(timeout=WAIT) == ((1,), {"timeout": 3, "retries": 4, "queue": "q"})


# -- options for one call -----------------------------------------------------


def test_options_delay_waits_for_the_clock(fake_clock_app: offload.App, clock: FakeClock) -> None:
    work = fake_clock_app.task(multiply)
    handle = work.options(delay=60)(3)
    run_until_idle(fake_clock_app)  # everything due has run: the call is not due
    assert handle.state is offload.State.QUEUED
    with pytest.raises(offload.ResultTimeout):
        handle.result(timeout=0)
    clock.advance(59)
    run_until_idle(fake_clock_app)
    assert not handle.done()
    clock.advance(1)
    run_until_idle(fake_clock_app)
    assert handle.result(timeout=0) == 6


def test_options_timeout_retries_priority(fake_clock_app: offload.App, clock: FakeClock) -> None:
    calls = []

    @fake_clock_app.task
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 2:
            raise ValueError("first attempt fails")
        return x

    call = flaky.options(timeout=5, retries=1, priority=5, delay=10)
    assert isinstance(call, offload.TaskCall)
    handle = call(7)
    run_until_idle(fake_clock_app)
    assert handle.state is offload.State.QUEUED  # delay=10 of the fake clock
    assert calls == []
    clock.advance(10)
    run_until_idle(fake_clock_app)
    assert handle.state is offload.State.RETRYING  # retries=1
    assert calls == [7]
    clock.advance(1.0)  # the default backoff's first delay is at most 1 s
    run_until_idle(fake_clock_app)
    assert handle.result(timeout=0) == 7
    assert calls == [7, 7]


def test_options_do_not_change_the_task(app: offload.App) -> None:
    @app.task
    def fails() -> None:
        raise ValueError("no")

    fails.options(retries=3)
    with pytest.raises(ValueError, match="no"):
        fails().result(timeout=WAIT)  # retries=0 still: failed at once


def test_options_timeout_applies_to_the_call(app: offload.App) -> None:
    release = threading.Event()

    @app.task
    def slow() -> None:
        release.wait(WAIT)

    try:
        with pytest.raises(offload.TaskTimeout):
            slow.options(timeout=0.05)().result(timeout=WAIT)
    finally:
        release.set()


def test_higher_priority_runs_first_when_the_pool_is_busy(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(threads=1)
    release = threading.Event()
    order: list[str] = []

    @app.task
    def record(label: str) -> None:
        order.append(label)

    started = threading.Event()

    @app.task
    def block_and_signal() -> None:
        started.set()
        release.wait(WAIT)

    blocker = block_and_signal()
    assert started.wait(WAIT)
    low = []
    for i in range(3):  # calls that arrive over time, while the only thread is busy
        low.append(record.options(priority=0)(f"low{i}"))
        time.sleep(0.02)
    high = record.options(priority=9)("high")
    time.sleep(0.02)
    release.set()
    offload.wait([blocker, *low, high], timeout=WAIT)
    assert order[0] == "high", f"priority=9 should run before queued priority=0: {order}"


def test_options_validate_their_values(app: offload.App) -> None:
    work = app.task(multiply)
    with pytest.raises(offload.ConfigurationError, match="timeout"):
        work.options(timeout=-1)
    with pytest.raises(offload.ConfigurationError, match="delay"):
        work.options(delay=-5)
    with pytest.raises(offload.ConfigurationError, match="retries"):
        work.options(retries=-1)


# -- map ----------------------------------------------------------------------


def test_map_returns_handles_in_order(app: offload.App) -> None:
    work = app.task(multiply)
    handles = work.map(range(10))
    assert len(handles) == 10
    assert all(isinstance(h, offload.Handle) for h in handles)
    assert [h.result(timeout=WAIT) for h in handles] == [x * 2 for x in range(10)]
    assert len({h.id for h in handles}) == 10


def test_map_with_two_iterables_zips_them(app: offload.App) -> None:
    work = app.task(multiply)
    handles = work.map([1, 2, 3], [10, 20, 30])
    assert [h.result(timeout=WAIT) for h in handles] == [10, 40, 90]


def test_map_of_options_uses_them(fake_clock_app: offload.App, clock: FakeClock) -> None:
    work = fake_clock_app.task(multiply)
    handles = work.options(delay=30).map([1, 2])
    assert not any(h.done() for h in handles)
    clock.advance(31)
    assert [h.result(timeout=WAIT) for h in handles] == [2, 4]


def test_map_progress_is_quiet_when_stderr_is_not_a_terminal(
    app: offload.App, capsys: pytest.CaptureFixture[str]
) -> None:
    work = app.task(multiply)
    handles = work.map(range(20), progress=True)
    offload.wait(handles, timeout=WAIT)
    assert [h.result() for h in handles] == [x * 2 for x in range(20)]
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_map_progress_shows_a_bar_on_a_terminal(
    app: offload.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    work = app.task(multiply)
    handles = work.map(range(20), progress=True)
    offload.wait(handles, timeout=WAIT)
    assert wait_until(lambda: "20/20" in terminal.getvalue()), terminal.getvalue()
    assert "multiply" in terminal.getvalue()


# -- bad declarations ---------------------------------------------------------


def test_unknown_pool_name_is_refused() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(pool="gpu")(multiply)
    message = str(info.value)
    assert "gpu" in message
    assert "thread" in message and "process" in message and "async" in message


@pytest.mark.parametrize("timeout", [-1, 0, -0.5])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(timeout=timeout)(multiply)
    message = str(info.value)
    assert "timeout" in message
    assert "greater than 0" in message


def test_timeout_must_be_a_number() -> None:
    with pytest.raises(offload.ConfigurationError, match="seconds"):
        offload.task(timeout="10s")(multiply)  # type: ignore[call-overload]


@pytest.mark.parametrize("thing", [3, "work", object()])
def test_non_callable_is_refused(thing: object) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(thing)  # type: ignore[call-overload]
    assert "function" in str(info.value)
    assert type(thing).__name__ in str(info.value)


def test_retry_on_must_be_exception_classes() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(retry_on="x")(multiply)  # type: ignore[call-overload]
    assert "retry_on" in str(info.value)
    assert "exception" in str(info.value)
    with pytest.raises(offload.ConfigurationError, match="retry_on"):
        offload.task(retry_on=(ValueError, 3))(multiply)  # type: ignore[arg-type]


@pytest.mark.parametrize("retries", [-1, 1.5, True])
def test_retries_must_be_a_whole_number(retries: object) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(retries=retries)(multiply)  # type: ignore[call-overload]
    assert "retries" in str(info.value)
    assert "whole number" in str(info.value)


def test_unknown_option_is_refused_and_the_options_are_listed() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(retry=3)(multiply)  # type: ignore[call-overload]
    message = str(info.value)
    assert "retry" in message
    assert "unknown" in message
    assert "retries" in message  # the list of valid options helps spot the typo


def test_sync_function_on_the_async_pool_is_refused() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(pool="async")(multiply)
    message = str(info.value)
    assert "multiply" in message
    assert "async def" in message
    assert "block" in message


def test_async_function_on_the_thread_pool_is_refused() -> None:
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 1

    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(pool="thread")(fetch)
    message = str(info.value)
    assert "fetch" in message
    assert "async" in message


def test_backoff_must_be_a_backoff() -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.task(backoff=2.0)(multiply)  # type: ignore[call-overload]
    assert "Backoff" in str(info.value)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        offload.task(pool="nope")(multiply)


def test_map_needs_an_iterable(app: offload.App) -> None:
    with pytest.raises(offload.ConfigurationError, match="iterable"):
        app.task(multiply).map()
