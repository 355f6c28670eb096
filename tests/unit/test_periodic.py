"""``app.periodic`` on an in-process app and a fake clock: declaring, and the ticks it runs."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import offload
from offload._scheduler import Scheduler
from offload.testing import FakeClock, run_until_idle


def scheduler_of(app: offload.App) -> Scheduler:
    """A second scheduler for ``app`` (beside its embedded worker's), run by hand."""
    scheduler = app.worker().scheduler
    assert scheduler is not None
    return scheduler


def test_a_function_becomes_a_scheduled_task() -> None:
    clock = FakeClock(start=1_000_000.5)
    calls: list[tuple[int, str]] = []
    lock = threading.Lock()
    with offload.App(clock=clock) as app:

        @app.periodic(every=timedelta(seconds=30), args=(7,), kwargs={"who": "x"}, retries=2)
        def beat(n: int, who: str) -> None:
            with lock:
                calls.append((n, who))

        assert isinstance(beat, offload.Task) and beat.spec.policy.retries == 2
        schedule = app.schedules[beat.name]
        assert schedule.every == 30.0 and schedule.missed is offload.Missed.SKIP
        mine = scheduler_of(app)
        for _ in range(3):
            clock.advance(30)
            mine.run_due()  # the embedded worker's scheduler may enqueue the tick first
            run_until_idle(app)
        run_until_idle(app)
        assert calls == [(7, "x")] * 3, "each tick once, with the schedule's arguments"


def test_a_task_declared_elsewhere_gets_a_schedule() -> None:
    clock = FakeClock()
    with offload.App(clock=clock) as app:

        @app.task
        def report() -> str:
            return "done"

        task = app.periodic(cron="0 * * * *", tz="Europe/Paris", queue="reports")(report)
        assert task is report
        assert app.schedules[report.name].queue == "reports"
        assert app.schedules[report.name].describe() == "cron '0 * * * *' (Europe/Paris)"
        with pytest.raises(offload.ConfigurationError, match="has a schedule already"):
            app.periodic(every=5)(report)


def test_declaration_options_are_refused_for_a_declared_task() -> None:
    with offload.App(clock=FakeClock()) as app:

        @app.task
        def work() -> None: ...

        with pytest.raises(offload.ConfigurationError, match="pool belong to the task"):
            app.periodic(every=5, pool="process")(work)


def test_a_bad_schedule_is_refused_at_declaration() -> None:
    with offload.App(clock=FakeClock()) as app:
        with pytest.raises(offload.ConfigurationError, match="IANA"):

            @app.periodic(cron="* * * * *", tz="Mars/Olympus")
            def nope() -> None: ...

        assert app.schedules == {}


def test_cron_and_every_are_still_not_task_options() -> None:
    with (
        offload.App(clock=FakeClock()) as app,
        pytest.raises(offload.ConfigurationError, match=r"every \(a schedule: @app.periodic"),
    ):
        app.task(every=5)  # type: ignore[call-overload]


def test_a_worker_without_a_scheduler() -> None:
    with offload.App(clock=FakeClock()) as app:
        app.periodic(every=5)(lambda: None)
        assert app.worker(scheduler=False).scheduler is None
        assert app.worker().scheduler is not None


def test_a_key_horizon_needs_a_key() -> None:
    from offload._message import option_problem

    message = offload.Message("id", "t", (), {}, key_horizon=60.0)
    assert option_problem(message) == (
        "key_horizon needs a key: it says how long the key outlives its job"
    )
    message.key = "periodic:t:0"
    assert option_problem(message) is None
    message.key_horizon = -1.0
    assert "key_horizon=-1.0 is out of range" in (option_problem(message) or "")
