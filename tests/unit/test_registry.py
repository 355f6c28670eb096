"""A worker's registry entry (``_registry.Presence``) on the memory broker, with a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from helpers import wait_until
from offload._brokers import MemoryBroker
from offload._brokers._base import WorkerInfo
from offload._message import Delivery, Message, new_id
from offload._registry import LAPSE, Presence, presence_for
from offload.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> MemoryBroker:
    return MemoryBroker(clock)


@pytest.fixture
def closed() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _presence(
    broker: MemoryBroker, clock: FakeClock, closed: threading.Event, running: list[Delivery]
) -> Presence:
    presence = presence_for(
        broker,
        queues=["mail"],
        pool="async",
        concurrency=7,
        running=lambda: running,
        clock=clock,
        closed=closed,
    )
    assert presence is not None
    return presence


def test_a_worker_registers_with_its_description(
    broker: MemoryBroker, clock: FakeClock, closed: threading.Event
) -> None:
    presence = _presence(broker, clock, closed, [])
    presence.register()
    (info,) = broker.inspector.workers()
    assert info.id == presence.id and info.id.split(":")[1] == str(info.pid)
    assert (info.queues, info.pool, info.concurrency) == (("mail",), "asyncio", 7)
    assert info.started == clock.now() and info.running == ()
    presence.leave()
    assert broker.inspector.workers() == []


def test_the_heartbeat_tells_the_running_jobs_and_releases_a_dead_workers(
    broker: MemoryBroker, clock: FakeClock, closed: threading.Event
) -> None:
    dead = WorkerInfo("dead:1:x", "dead", 1, (), "threads", 1, clock.now(), clock.now(), ())
    broker.registry.register(dead, LAPSE)  # this broker object's claims are held by "dead"
    message = Message(new_id(), "tasks.work", (), {})
    broker.enqueue([message])
    held = broker.claim(None, 1, 300.0)
    presence = _presence(broker, clock, closed, held)
    presence.register()
    thread = threading.Thread(target=presence.heartbeat)
    thread.start()
    try:
        clock.advance(LAPSE / 5)  # one beat: it reports what it runs
        assert wait_until(
            lambda: (
                [w.running for w in broker.inspector.workers() if w.id == presence.id]
                == [(message.id,)]
            )
        )
        assert broker.claim(None, 1, 300.0) == []
        clock.advance(LAPSE)  # "dead" lapsed: the next beat releases its job
        assert wait_until(lambda: [w.id for w in broker.inspector.workers()] == [presence.id])
        (again,) = broker.claim(None, 1, 300.0)
        assert again.message.id == message.id and again.attempt == 2
    finally:
        closed.set()
        thread.join(5)


def test_an_unreachable_broker_is_not_fatal_and_registration_is_retried(
    broker: MemoryBroker, clock: FakeClock, closed: threading.Event
) -> None:
    presence = _presence(broker, clock, closed, [])
    calls = []
    register = broker.registry.register

    def down_once(info: WorkerInfo, lapse: float) -> None:
        calls.append(info.id)
        if len(calls) == 1:
            raise ConnectionError("broker down")
        register(info, lapse)

    broker.registry.register = down_once  # type: ignore[method-assign]
    presence.register()  # logged, not raised
    assert broker.inspector.workers() == []
    thread = threading.Thread(target=presence.heartbeat)
    thread.start()
    try:
        clock.advance(LAPSE / 5)
        assert wait_until(lambda: len(broker.inspector.workers()) == 1)
    finally:
        closed.set()
        thread.join(5)
