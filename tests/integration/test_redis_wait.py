"""A worker's wait right after an empty claim uses what that claim saw (no PROBE).

Against the real server (``OFFLOAD_TEST_REDIS_URL``), in a namespace of
each test's own.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("redis")

from offload._brokers._redis import RedisBroker
from offload._message import Message, new_id
from servers import redis_broker  # noqa: F401 - the module's `broker` fixture


def message() -> Message:
    return Message(new_id(), "tasks.work", (), {}, payload=b"[[],{}]", created=time.time())


def test_a_wait_after_an_empty_claim_ends_when_a_lease_lapses(broker: RedisBroker) -> None:
    job = message()
    broker.enqueue([job])
    (held,) = broker.claim(None, 1, 0.3)  # a worker that will die holding it
    started, waits = time.monotonic(), 0
    while not (again := broker.claim(None, 1, 30)):
        broker.wait_for_messages(10)
        waits += 1
    assert [d.message.id for d in again] == [job.id]
    assert again[0].token != held.token
    assert 0.25 < time.monotonic() - started < 2.0, "woke at the lease end, not at the timeout"
    assert waits <= 3


def test_a_wait_after_an_empty_claim_still_wakes_for_a_new_message(
    broker: RedisBroker,
) -> None:
    assert broker.claim(None, 1, 30) == []
    broker.enqueue([message()])  # after the claim looked: its wake-up token ends the wait
    started = time.monotonic()
    broker.wait_for_messages(10)
    assert time.monotonic() - started < 2.0
    assert len(broker.claim(None, 1, 30)) == 1
