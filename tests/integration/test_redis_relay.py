"""A Redis worker's dispatcher runs the job its wait claimed; a second thread claims meanwhile.

A real worker in this process, on the real server (``OFFLOAD_TEST_REDIS_URL``),
in a namespace of each test's own. What a user would check: the job ran on
the thread that claimed it (no hand-off), a long job there never holds up
the next claim, and shutdown drains or releases it as it would a pool
thread's job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import offload
from helpers import wait_until
from offload import State
from offload._worker import Worker
from servers import scratch_url

WAIT = 30.0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[offload.App]:
    with scratch_url("redis", tmp_path) as url:
        app = offload.App(url, name="relay")
        yield app
        app.shutdown(wait=False)


class Gate:
    """What the tasks below wait for and report (reset for each test)."""

    release: ClassVar[threading.Event] = threading.Event()
    started: ClassVar[threading.Event] = threading.Event()


@pytest.fixture(autouse=True)
def gate() -> Iterator[type[Gate]]:
    Gate.release, Gate.started = threading.Event(), threading.Event()
    yield Gate
    Gate.release.set()


# Durable apps run module-level functions only (a worker imports them by name).


def where() -> str:
    return threading.current_thread().name


def blocked() -> str:
    Gate.started.set()
    assert Gate.release.wait(WAIT)
    return threading.current_thread().name


def test_an_idle_worker_runs_a_claimed_job_on_the_thread_that_claimed_it(
    app: offload.App,
) -> None:
    task = app.task(name="relay.where")(where)
    worker = app.worker(concurrency=4, scheduler=False)
    worker.start()
    relay = worker._relay
    assert relay is not None, "a Redis worker passes its role between two threads"
    names: list[str] = []
    try:
        for _ in range(5):
            # Idle: the thread that ran the last job stands by again. It does so just
            # after its ack, so a result can reach us (and the next call the worker)
            # a moment before; that next call would rightly go to the pool.
            assert wait_until(lambda: relay._standing_by, WAIT)
            names.append(task().result(timeout=WAIT))
    finally:
        worker.stop()
    assert names == ["relay-dispatcher"] * 5, names


def test_a_long_job_on_the_dispatcher_never_holds_up_the_next_claim(app: offload.App) -> None:
    slow = app.task(name="relay.blocked")(blocked)
    fast = app.task(name="relay.where")(where)
    worker = app.worker(concurrency=4, scheduler=False)
    worker.start()
    try:
        held = slow()
        assert Gate.started.wait(WAIT)
        # The other thread claims meanwhile; with no thread to take its role over
        # (the first one is busy), it hands the job to the pool.
        assert [fast().result(timeout=WAIT) for _ in range(3)] == ["relay-thread"] * 3
        assert not held.done()
        Gate.release.set()
        assert held.result(timeout=WAIT) == "relay-dispatcher"
        # Both threads free again: the dispatcher runs what it claims once more (once the
        # thread that ran the long job, whose result is already in hand, stands by again).
        assert wait_until(lambda: fast().result(timeout=WAIT) == "relay-dispatcher", WAIT)
    finally:
        Gate.release.set()
        worker.stop()


def a_job_blocked_on_the_dispatcher(app: offload.App) -> tuple[Worker, offload.Handle[str]]:
    """A started worker of 2 slots, and the handle of a job that runs on its dispatcher
    until ``Gate.release`` is set."""
    slow = app.task(name="relay.blocked")(blocked)
    worker = app.worker(concurrency=2, scheduler=False)
    worker.start()
    handle = slow()
    assert Gate.started.wait(WAIT)
    return worker, handle


def test_a_drain_releases_a_job_still_running_on_the_dispatcher(app: offload.App) -> None:
    worker, handle = a_job_blocked_on_the_dispatcher(app)
    started = time.monotonic()
    assert worker.drain(0.5) == 1, "released for another worker"
    assert time.monotonic() - started < 5.0, "the drain did not wait for the job"
    job = app.inspector.job(handle.id)
    assert job is not None
    assert job.state is State.QUEUED
    Gate.release.set()


def test_a_drain_lets_a_job_on_the_dispatcher_finish_within_its_grace(app: offload.App) -> None:
    worker, handle = a_job_blocked_on_the_dispatcher(app)
    threading.Timer(0.2, Gate.release.set).start()
    assert worker.drain(WAIT) == 0
    assert handle.result(timeout=WAIT) == "relay-dispatcher"
    gone = lambda: not any(t.name == "relay-dispatcher" for t in threading.enumerate())  # noqa: E731
    assert wait_until(gone, WAIT), "both dispatcher threads left"
