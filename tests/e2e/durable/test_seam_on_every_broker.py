"""The seam, on every broker: one recording middleware sees the same hooks in the same order.

An app with an embedded worker runs a fixed script of calls one after the
other (each waited for, outcome hook included), so the sequence of hooks
is deterministic: enqueue, execute, outcome for a success; a retry; a
final failure; an ``offload.Delay`` (the message waits, no attempt
counted); the process pool; the async pool; startup and shutdown. The
tasks report ``offload.current()``: its id is the handle's, on every
broker and pool, in the child process too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import offload
import seam_tasks
from offload import Backoff, Delay, JobContext, Message, Middleware, Outcome
from servers import drop_postgres_schema, require_postgres, require_redis


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    namespace = f"t_{uuid.uuid4().hex}"
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    elif request.param == "redis":
        url = f"{require_redis()}?namespace={namespace}"
        yield url
        from offload._brokers._redis import RedisBroker

        RedisBroker.from_url(url).drop()
    else:
        yield f"{require_postgres()}?namespace={namespace}"
        drop_postgres_schema(f"offload_{namespace}")


class Recorder(Middleware):
    """Records every hook; delays the first attempt of ``delayed`` once; tags messages."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.outcomes = threading.Condition()
        self.delayed_once = False

    def enqueue(self, messages: list[Message], call_next: Callable[..., list[str]]) -> list[str]:
        for message in messages:
            self.events.append(("enqueue", _short(message.task)))
            message.meta = {**(message.meta or {}), "trace": "t-1"}
        return call_next(messages)

    def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
        assert offload.current() is job  # the context is set around the hooks too
        self.events.append(("execute", _short(job.task), job.attempt))
        if _short(job.task) == "delayed" and not self.delayed_once:
            self.delayed_once = True
            raise Delay(0.2)
        return call_next()

    def outcome(self, job: JobContext, outcome: Outcome) -> None:
        with self.outcomes:
            self.events.append(("outcome", _short(job.task), outcome.state.value))
            self.outcomes.notify_all()

    def startup(self, worker: Any) -> None:
        self.events.append(("startup",))

    def shutdown(self, worker: Any) -> None:
        self.events.append(("shutdown",))

    def wait_for_outcomes(self, count: int) -> None:
        deadline = time.monotonic() + 30
        with self.outcomes:
            while sum(1 for e in self.events if e[0] == "outcome") < count:
                left = deadline - time.monotonic()
                assert left > 0, f"no outcome hook after {self.events}"
                self.outcomes.wait(left)


def _short(task: str) -> str:
    return task.rsplit(".", 1)[-1]


EXPECTED = [
    ("startup",),
    ("enqueue", "sync"),
    ("execute", "sync", 1),
    ("outcome", "sync", "succeeded"),
    ("enqueue", "flaky"),
    ("execute", "flaky", 1),
    ("outcome", "flaky", "retrying"),
    ("execute", "flaky", 2),
    ("outcome", "flaky", "succeeded"),
    ("enqueue", "fails"),
    ("execute", "fails", 1),
    ("outcome", "fails", "failed"),
    ("enqueue", "delayed"),
    ("execute", "delayed", 1),
    ("outcome", "delayed", "queued"),
    ("execute", "delayed", 1),  # the same attempt: a Delay counts none
    ("outcome", "delayed", "succeeded"),
    ("enqueue", "process"),
    ("execute", "process", 1),
    ("outcome", "process", "succeeded"),
    ("enqueue", "coroutine"),
    ("execute", "coroutine", 1),
    ("outcome", "coroutine", "succeeded"),
    ("shutdown",),
]


def test_one_recording_middleware_sees_the_same_hooks_on_every_broker(url: str) -> None:
    recorder = Recorder()
    app = offload.App(url, embedded_worker=True, middleware=[recorder])
    sync = app.task(name="seam.sync")(seam_tasks.whoami)
    flaky = app.task(name="seam.flaky", retries=1, backoff=Backoff(base=0.05, jitter=False))(
        seam_tasks.flaky
    )
    fails = app.task(name="seam.fails")(seam_tasks.fails)
    delayed = app.task(name="seam.delayed")(seam_tasks.whoami)
    process = app.task(name="seam.process", pool="process")(seam_tasks.whoami)
    coroutine = app.task(name="seam.coroutine")(seam_tasks.whoami_async)
    try:
        handle = sync(1)
        assert handle.result(timeout=30) == (2, handle.id, 1, "t-1")
        recorder.wait_for_outcomes(1)
        assert flaky().result(timeout=30) == "second time lucky"
        recorder.wait_for_outcomes(3)
        with pytest.raises(ValueError, match="always"):
            fails().result(timeout=30)
        recorder.wait_for_outcomes(4)
        handle = delayed(3)
        assert handle.result(timeout=30) == (6, handle.id, 1, "t-1")
        recorder.wait_for_outcomes(6)
        handle = process(4)
        assert handle.result(timeout=60) == (8, handle.id, 1, "t-1")  # the child's context
        recorder.wait_for_outcomes(7)
        handle = coroutine(5)
        assert handle.result(timeout=30) == (10, handle.id, 1, "t-1")
        recorder.wait_for_outcomes(8)
    finally:
        app.shutdown()
    assert recorder.events == EXPECTED
