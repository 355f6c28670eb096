"""Middleware and the job context on the in-process app: order, failures, Delay, batches."""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import offload
from offload import Delay, JobContext, Message, Middleware, Outcome

Store = Callable[[list[Message]], list[str]]


@pytest.fixture
def make_app() -> Iterator[Callable[..., offload.App]]:
    apps: list[offload.App] = []

    def make(*middleware: Middleware, **options: Any) -> offload.App:
        app = offload.App(middleware=list(middleware), **options)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.shutdown(wait=False)


class Trace(Middleware):
    """Appends ``name:before`` / ``name:after`` around each hook it wraps."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def enqueue(self, messages: list[Message], call_next: Store) -> list[str]:
        self.log.append(f"{self.name}:enqueue {len(messages)}")
        return call_next(messages)

    def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
        self.log.append(f"{self.name}:before")
        try:
            return call_next()
        finally:
            self.log.append(f"{self.name}:after")


def test_current_outside_a_task_raises_a_clear_lookup_error() -> None:
    with pytest.raises(offload.NoCurrentJob, match="outside a running task") as raised:
        offload.current()
    assert isinstance(raised.value, LookupError)


def test_the_first_middleware_is_the_outermost(make_app: Callable[..., offload.App]) -> None:
    log: list[str] = []
    app = make_app(Trace("a", log), Trace("b", log))
    task = app.task(lambda: log.append("task") or offload.current().task)
    assert task().result(timeout=10) == task.name
    assert log == [
        "a:enqueue 1",
        "b:enqueue 1",
        "a:before",
        "b:before",
        "task",
        "b:after",
        "a:after",
    ]


def test_enqueue_wraps_batches_once(make_app: Callable[..., offload.App]) -> None:
    log: list[str] = []
    app = make_app(Trace("a", log))
    square = app.task(lambda x: x * x)
    assert [h.result(timeout=10) for h in square.map(range(5))] == [0, 1, 4, 9, 16]
    assert log.count("a:enqueue 5") == 1
    assert log.count("a:before") == 5


def test_an_enqueue_hook_can_refuse_a_call(make_app: Callable[..., offload.App]) -> None:
    class Refuse(Middleware):
        def enqueue(
            self, messages: list[Message], call_next: Callable[..., list[str]]
        ) -> list[str]:
            raise PermissionError("not today")

    app = make_app(Refuse())
    with pytest.raises(PermissionError, match="not today"):
        app.task(lambda: 1)()


def test_an_enqueue_hook_must_return_every_id(make_app: Callable[..., offload.App]) -> None:
    class Drops(Middleware):
        def enqueue(
            self, messages: list[Message], call_next: Callable[..., list[str]]
        ) -> list[str]:
            return call_next(messages)[:-1]

    app = make_app(Drops())
    with pytest.raises(offload.ConfigurationError, match="must return call_next"):
        app.task(lambda: 1)()


def test_an_execute_hook_that_raises_fails_the_attempt_and_retries_apply(
    make_app: Callable[..., offload.App],
) -> None:
    class FailsFirst(Middleware):
        def __init__(self) -> None:
            self.calls = 0

        def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
            self.calls += 1
            if job.attempt == 1:
                raise ConnectionError("flaky dependency")
            return call_next()

    hook = FailsFirst()
    app = make_app(hook)
    task = app.task(retries=1, backoff=offload.Backoff(base=0, jitter=False))(lambda: "ran")
    assert task().result(timeout=10) == "ran"
    assert hook.calls == 2
    no_retry = app.task(name="no_retry")(lambda: "never")
    with pytest.raises(ConnectionError):
        no_retry().result(timeout=10)


def test_a_failing_notification_is_logged_and_the_worker_goes_on(
    make_app: Callable[..., offload.App], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Middleware):
        def outcome(self, job: JobContext, outcome: Outcome) -> None:
            raise RuntimeError("metrics backend down")

        def startup(self, worker: Any) -> None:
            raise RuntimeError("cannot start")

    app = make_app(Broken())
    task = app.task(lambda x: x + 1)
    with caplog.at_level(logging.ERROR, logger="offload"):
        assert [task(i).result(timeout=10) for i in range(3)] == [1, 2, 3]
    failures = [r for r in caplog.records if "Broken." in r.getMessage()]
    assert {r.getMessage().split()[2] for r in failures} == {"Broken.outcome", "Broken.startup"}
    assert all(r.exc_info is not None for r in failures)  # with the traceback


def test_delay_waits_without_counting_an_attempt(make_app: Callable[..., offload.App]) -> None:
    seen: list[int] = []

    class WaitOnce(Middleware):
        def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
            seen.append(job.attempt)
            if len(seen) == 1:
                raise Delay(datetime.timedelta(seconds=0.05))
            return call_next()

    app = make_app(WaitOnce())
    handle = app.task(lambda: offload.current().attempt)()
    assert handle.result(timeout=10) == 1
    assert seen == [1, 1]


def test_a_delayed_call_can_be_cancelled_while_it_waits(
    make_app: Callable[..., offload.App],
) -> None:
    delayed = threading.Event()

    class WaitLong(Middleware):
        def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
            delayed.set()
            raise Delay(3600)

        def outcome(self, job: JobContext, outcome: Outcome) -> None:
            pass

    app = make_app(WaitLong())
    handle = app.task(lambda: "never")()
    assert delayed.wait(10)
    deadline = threading.Event()
    while handle.state is not offload.State.QUEUED and not deadline.wait(0.01):
        pass
    assert handle.cancel()
    assert handle.cancelled()


def test_delay_takes_seconds_timedeltas_and_datetimes() -> None:
    now = 1_000.0
    assert Delay(2.5).eta(now) == 1_002.5
    assert Delay(datetime.timedelta(minutes=1)).eta(now) == 1_060.0
    moment = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert Delay(moment).eta(now) == moment.timestamp()
    assert Delay(moment.replace(tzinfo=None)).eta(now) == moment.timestamp()  # naive: UTC
    with pytest.raises(offload.ConfigurationError, match="give seconds"):
        Delay(float("nan")).eta(now)


def test_an_async_native_hook_stays_on_the_loop(make_app: Callable[..., offload.App]) -> None:
    loops: list[object] = []

    class OnLoop(Middleware):
        async def aexecute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
            loops.append(asyncio.get_running_loop())
            return await call_next()

    async def coroutine() -> str:
        loops.append(asyncio.get_running_loop())
        return offload.current().id

    app = make_app(OnLoop())
    handle = app.task(coroutine)()
    assert handle.result(timeout=10) == handle.id
    assert len(loops) == 2 and loops[0] is loops[1]


def test_middleware_must_be_instances() -> None:
    with pytest.raises(offload.ConfigurationError, match=r"offload\.Middleware instances"):
        offload.App(middleware=[Trace])  # type: ignore[list-item]


def test_no_middleware_means_no_chain_on_the_hot_path() -> None:
    app = offload.App()
    try:
        assert app._runner.chain is None
        assert app.middleware == ()
        assert app.task(lambda: offload.current().attempt)().result(timeout=10) == 1
    finally:
        app.shutdown()
