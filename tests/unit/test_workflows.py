"""Workflows in-process: chain, group, chord, depends_on; failure, cancellation, signatures."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import offload
from offload._message import Delivery, Message
from offload._workflow_gate import MAX_POLL, MIN_POLL, poll_after
from offload.testing import FakeClock, run_until_idle


def _tasks(app: offload.App, ran: list[str]) -> tuple[Any, Any, Any]:
    @app.task
    def add(x: int, y: int) -> int:
        ran.append(f"add {x} {y}")
        return x + y

    @app.task
    def total(xs: list[int], plus: int = 0) -> int:
        ran.append(f"total {xs}")
        return sum(xs) + plus

    @app.task
    def boom(x: int) -> int:
        ran.append(f"boom {x}")
        raise ValueError(f"boom {x}")

    return add, total, boom


def test_a_chain_feeds_each_result_to_the_next_step_first(app: offload.App) -> None:
    ran: list[str] = []
    add, _, _ = _tasks(app, ran)
    handle = offload.chain(add.s(1, 2), add.s(10), add.s(100)).delay()
    assert handle.result(timeout=10) == 113
    assert ran == ["add 1 2", "add 3 10", "add 13 100"]
    assert len(handle.steps) == 3 and handle.id == handle.steps[-1]


def test_a_group_returns_its_results_in_order(app: offload.App) -> None:
    add, _, _ = _tasks(app, [])
    handle = offload.group(add.s(i, i) for i in range(20)).delay()
    assert handle.result(timeout=10) == [2 * i for i in range(20)]
    assert handle.task_name == "offload.group"


def test_a_chord_calls_back_once_with_the_list(app: offload.App) -> None:
    ran: list[str] = []
    add, total, _ = _tasks(app, ran)
    handle = offload.chord((add.s(i, 1) for i in range(5)), total.s(plus=100)).delay()
    assert handle.result(timeout=10) == 115
    assert [line for line in ran if line.startswith("total")] == ["total [1, 2, 3, 4, 5]"]


def test_an_empty_chord_calls_back_with_an_empty_list(app: offload.App) -> None:
    _, total, _ = _tasks(app, [])
    with pytest.raises(offload.ConfigurationError, match="at least one step"):
        offload.group().delay()  # no step: no app to run on
    assert offload.chain(offload.group(), total.s()).delay().result(timeout=10) == 0
    assert offload.chord([], total.s(plus=1)).delay().result(timeout=10) == 1


def test_workflows_nest(app: offload.App) -> None:
    add, total, _ = _tasks(app, [])
    grouped_then_summed = offload.chain(offload.group(add.s(1, 1), add.s(2, 2)), total.s())
    assert grouped_then_summed().result(timeout=10) == 6
    group_of_chains = offload.group(offload.chain(add.s(1, 1), add.s(1)), add.s(5, 5))
    assert group_of_chains.delay().result(timeout=10) == [3, 10]
    chord_in_chain = offload.chain(add.s(0, 1), offload.chord([add.s(1), add.s(2)], total.s()))
    assert chord_in_chain.delay().result(timeout=10) == 5  # 1+1, 1+2: each member fed 1


def test_depends_on_runs_after_those_jobs_succeeded(app: offload.App) -> None:
    order: list[str] = []
    release = threading.Event()

    @app.task
    def first() -> str:
        assert release.wait(10)
        order.append("first")
        return "a"

    @app.task
    def after(word: str) -> str:
        order.append("after")
        return word

    h1 = first()
    handle = after.options(depends_on=[h1])("b")
    assert not handle.done()
    release.set()
    assert handle.result(timeout=10) == "b"  # nothing fed: depends_on only orders
    assert order == ["first", "after"]


def test_a_failed_step_fails_the_handle_with_its_own_exception(app: offload.App) -> None:
    ran: list[str] = []
    add, total, boom = _tasks(app, ran)
    handle = offload.chain(add.s(1, 2), boom.s(), add.s(1), add.s(2)).delay()
    with pytest.raises(ValueError, match="boom 3"):
        handle.result(timeout=10)
    assert ran == ["add 1 2", "boom 3"], "the rest is not run"
    group = offload.chord([add.s(1, 1), boom.s(7)], total.s()).delay()
    with pytest.raises(ValueError, match="boom 7"):
        group.result(timeout=10)
    assert not any(line.startswith("total") for line in ran)


def test_a_failed_step_is_not_retried_in_its_dependents(app: offload.App) -> None:
    ran: list[str] = []
    _, _, boom = _tasks(app, ran)

    @app.task(retries=3, backoff=offload.Backoff(base=0, jitter=False))
    def patient(x: int) -> int:
        ran.append("patient")
        return x

    with pytest.raises(ValueError):
        offload.chain(boom.s(1), patient.s()).delay().result(timeout=10)
    assert ran == ["boom 1"]


def test_a_cancelled_dependency_cancels_its_dependents(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    ran: list[str] = []
    add, _, _ = _tasks(fake_clock_app, ran)
    later = add.options(delay=60)(1, 1)
    handle = add.options(depends_on=[later])(2, 2)
    run_until_idle(fake_clock_app)
    assert later.cancel()
    for _ in range(5):
        clock.advance(MAX_POLL)
        run_until_idle(fake_clock_app)
    assert handle.cancelled() and ran == []
    with pytest.raises(offload.TaskCancelled):
        handle.result(timeout=0)
    assert fake_clock_app.workflows.gate._local == {}, "nothing kept for an ended step"


def test_cancelling_a_workflow_cancels_its_waiting_steps(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    ran: list[str] = []
    add, total, _ = _tasks(fake_clock_app, ran)
    handle = offload.chord([add.options(delay=60).s(1, 1), add.s(2, 2)], total.s()).delay()
    run_until_idle(fake_clock_app)
    assert ran == ["add 2 2"]
    assert handle.cancel()
    clock.advance(120)
    run_until_idle(fake_clock_app)
    assert ran == ["add 2 2"], "the delayed member and the callback never ran"
    assert handle.cancelled()
    assert fake_clock_app.workflows.gate._local == {}, "nothing kept for a cancelled step"


def test_a_waiting_step_polls_with_a_growing_backoff(
    fake_clock_app: offload.App, clock: FakeClock
) -> None:
    add, _, _ = _tasks(fake_clock_app, [])
    first = add.options(delay=30)(1, 1)
    handle = add.options(depends_on=[first])(2, 2)
    run_until_idle(fake_clock_app)
    job = fake_clock_app.job(handle.id)
    assert job is not None and job.eta is not None
    assert job.eta - clock.now() == pytest.approx(MIN_POLL)
    clock.advance(30)
    run_until_idle(fake_clock_app)
    clock.advance(MAX_POLL)
    run_until_idle(fake_clock_app)
    assert handle.result(timeout=0) == 4


def test_the_poll_doubles_its_spacing_up_to_a_cap() -> None:
    assert poll_after(100.0, 100.0) == MIN_POLL
    assert poll_after(101.0, 100.0) == 0.5
    assert poll_after(1000.0, 100.0) == MAX_POLL


def test_async_steps_are_fed_too(app: offload.App) -> None:
    @app.task
    async def double(x: int) -> int:
        return 2 * x

    assert offload.chain(double.s(1), double.s(), double.s()).delay().result(timeout=10) == 8


def test_a_signature_keeps_its_options_and_runs_alone(app: offload.App) -> None:
    add, _, _ = _tasks(app, [])
    signature = add.options(priority=5).s(1, y=2)
    assert signature.options.priority == 5
    assert repr(signature).endswith(".s(1, y=2)")
    assert signature.delay().result(timeout=10) == 3


def test_bad_workflows_are_refused_with_a_clear_error(app: offload.App) -> None:
    add, _, _ = _tasks(app, [])
    with pytest.raises(offload.ConfigurationError, match="at least one step"):
        offload.chain()
    with pytest.raises(offload.ConfigurationError, match="signatures"):
        offload.chain(add.s(1, 1), add)  # type: ignore[call-overload]
    with pytest.raises(offload.ConfigurationError, match="key="):
        offload.chain(add.options(key="k").s(1, 1)).delay()
    with pytest.raises(offload.ConfigurationError, match="depends_on="):
        add.options(depends_on=[42])  # type: ignore[list-item]
    with pytest.raises(offload.ConfigurationError, match="takes no key"):
        add.options(key="k", depends_on=[add(1, 1)])(2, 2)
    other = offload.App()
    try:
        stranger = other.task(lambda x: x, name="stranger")
        with pytest.raises(offload.ConfigurationError, match="another app"):
            offload.chain(add.s(1, 1), stranger.s()).delay()
    finally:
        other.shutdown()


def test_every_app_declares_the_group_collector() -> None:
    app = offload.App()
    try:
        assert app.resolve_task("offload.group") is not None
    finally:
        app.shutdown()


def test_a_plain_message_skips_the_workflow_gate(app: offload.App) -> None:
    """The hot path: a message without workflow meta runs bare (no middleware chain)."""
    runner = app._runner
    plain = runner.begin(Delivery(Message("1", "offload.group", (), {}), 1, 0.0))
    assert plain is not None and plain.chain is None
    step = Message("2", "offload.group", (), {}, meta={"offload.after": ""})
    gated = runner.begin(Delivery(step, 2, 0.0))
    assert gated is not None and gated.chain is not None


def test_the_app_s_middleware_runs_around_steps_once_they_may_run(clock: FakeClock) -> None:
    seen: list[str] = []

    class Count(offload.Middleware):
        def execute(self, job: offload.JobContext, call_next: Any) -> Any:
            seen.append(job.task)
            return call_next()

    app = offload.App(clock=clock, middleware=[Count()])
    try:
        add, _, _ = _tasks(app, [])
        handle = offload.chain(add.options(delay=30).s(1, 1), add.s(1)).delay()
        for _ in range(3):
            run_until_idle(app)
            clock.advance(MAX_POLL)
        assert seen == [], "a step that waits never reaches the app's middleware"
        clock.advance(30)
        for _ in range(20):
            run_until_idle(app)
            clock.advance(MAX_POLL)
        assert handle.result(timeout=0) == 3
        assert len(seen) == 2
    finally:
        app.shutdown(wait=False, cancel_pending=True)
