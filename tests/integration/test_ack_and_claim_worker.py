"""A worker on a broker that acks and claims in one step (``AckAndClaim``), in this process.

With every slot taken, the call that frees one records its outcome and
claims the next message with one ``ack_and_claim``. These tests run a real
worker on real SQLite files and PostgreSQL schemas and check what a user
would: every job runs once, no more jobs hold leases than there are slots,
a fenced ack records nothing yet the worker goes on, and an outage while
recording loses nothing.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import offload
from helpers import wait_until
from offload import State
from offload._brokers._claiming import AckAndClaim
from offload._errors import BrokerUnavailable
from servers import scratch_url

WAIT = 60.0


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with scratch_url(request.param, tmp_path) as scratch:
        yield scratch


@pytest.fixture
def make_app(url: str) -> Iterator[Callable[[], offload.App]]:
    apps: list[offload.App] = []

    def make() -> offload.App:
        app = offload.App(url, name=f"ackclaim-{len(apps)}")
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.shutdown(wait=False)


def counting(app: offload.App) -> collections.Counter[str]:
    """Count the broker calls the app's worker makes (the instance's methods, wrapped)."""
    broker: Any = app.broker
    if not isinstance(broker, AckAndClaim):
        pytest.skip(f"{type(broker).__name__} acks and claims in separate calls")
    calls: collections.Counter[str] = collections.Counter()
    for name in ("ack", "claim", "ack_and_claim", "nack"):
        method = getattr(broker, name)

        def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(broker, name, counted)
    return calls


def running_jobs(app: offload.App) -> int:
    return sum(states.get(State.RUNNING, 0) for states in app.inspector.counts().values())


class Seen:
    """What the tasks below saw, for the test that runs them (reset by ``seen``)."""

    ran: ClassVar[collections.Counter[int]] = collections.Counter()
    held: ClassVar[list[int]] = []
    observer: ClassVar[offload.App | None] = None
    worker: ClassVar[Any] = None
    thief: ClassVar[Any] = None
    stolen: ClassVar[list[Any]] = []
    calls: ClassVar[collections.Counter[str]] = collections.Counter()
    calls_before_next: ClassVar[dict[str, int]] = {}


@pytest.fixture(autouse=True)
def seen() -> Iterator[type[Seen]]:
    Seen.ran, Seen.held, Seen.stolen = collections.Counter(), [], []
    yield Seen
    Seen.observer = Seen.worker = Seen.thief = None


# Durable apps run module-level functions only (a worker imports them by name).


def count(i: int) -> int:
    if Seen.observer is not None:
        Seen.held.append(running_jobs(Seen.observer))
    Seen.ran[i] += 1
    return i


def robbed() -> str:
    # The dispatcher saw no free slot and sleeps: this call's ack will claim.
    assert wait_until(lambda: Seen.worker._starved, 10)
    mine = offload.current()._delivery
    # Its lease "lapsed" and another worker claimed the job: a newer token.
    assert Seen.thief.nack(mine, None, penalty=False)
    Seen.stolen.extend(Seen.thief.claim(None, 1, 30.0))
    return "stale"


def after() -> str:
    Seen.calls_before_next = dict(Seen.calls)
    return "next"


def test_a_full_worker_claims_with_its_acks_and_never_holds_more_than_its_slots(
    make_app: Callable[[], offload.App],
) -> None:
    app = make_app()
    calls = counting(app)
    Seen.observer = make_app()  # reads the broker through a connection of its own
    task = app.task(name="ackclaim.count")(count)
    handles = task.map(range(200))
    worker = app.worker(concurrency=2, scheduler=False)
    worker.start()
    try:
        assert [h.result(timeout=WAIT) for h in handles] == list(range(200))
    finally:
        worker.stop()
    assert Seen.ran == dict.fromkeys(range(200), 1), "every job ran exactly once"
    most = max(Seen.held)
    assert most <= 2, f"leases held never exceed the 2 slots (seen {most})"
    assert calls["ack_and_claim"] >= 150, f"the full worker claims with its acks: {calls}"
    assert calls["claim"] < 50, calls


def test_a_fenced_ack_records_nothing_and_the_next_job_still_runs(
    make_app: Callable[[], offload.App],
) -> None:
    """The job's lease is taken over by another worker while it runs: its ack is fenced
    off (nothing recorded), and the claim made with that ack still runs the next job."""
    app = make_app()
    Seen.calls = counting(app)
    Seen.thief = make_app().broker  # "another worker", with a connection of its own
    Seen.worker = worker = app.worker(concurrency=1, scheduler=False)
    # Priority: claimed before "next", even once put back.
    first = app.task(name="ackclaim.robbed", priority=5)(robbed)()
    second = app.task(name="ackclaim.next")(after)()
    worker.start()
    try:
        assert second.result(timeout=WAIT) == "next"
    finally:
        worker.stop()
    assert [d.message.id for d in Seen.stolen] == [first.id]
    job = app.job(first.id)
    assert (job.state, job.result) == (State.RUNNING, None), "the stale outcome is not recorded"
    # When "next" ran, the worker had claimed twice: the dispatcher's first claim, and
    # the fenced ack's.
    assert Seen.calls_before_next == {"claim": 1, "ack_and_claim": 1}


@pytest.mark.parametrize("fails_after", ["nothing", "the ack"])
def test_an_outage_while_acking_and_claiming_loses_nothing(
    make_app: Callable[[], offload.App], fails_after: str
) -> None:
    """``ack_and_claim`` raises (the broker unreachable) before anything happened, or after
    the ack alone: the worker records the outcome again, and every job runs exactly once."""
    app = make_app()
    broker: Any = app.broker
    if not isinstance(broker, AckAndClaim):
        pytest.skip(f"{type(broker).__name__} acks and claims in separate calls")
    real = broker.ack_and_claim
    failures = threading.Semaphore(5)  # the first five calls fail

    def flaky(delivery: Any, outcome: Any, *args: Any) -> Any:
        if failures.acquire(blocking=False):
            if fails_after == "the ack":
                broker.ack(delivery, outcome)
            raise BrokerUnavailable("the broker went away (a test's outage)")
        return real(delivery, outcome, *args)

    broker.ack_and_claim = flaky
    app.task(name="ackclaim.count")(count)
    # The producer is another app, as in another process: an ack that went through
    # before the call failed is not answered again to the worker, but the producer
    # reads it from the broker.
    producer = make_app()
    handles = producer.task(name="ackclaim.count")(count).map(range(60))
    worker = app.worker(concurrency=2, scheduler=False)
    worker.start()
    try:
        assert [h.result(timeout=WAIT) for h in handles] == list(range(60))
    finally:
        worker.stop()
    assert not failures.acquire(blocking=False), "the outage happened"
    assert Seen.ran == dict.fromkeys(range(60), 1), "nothing lost, nothing run twice"
    assert app.inspector.counts() == {"default": {State.SUCCEEDED: 60}}
