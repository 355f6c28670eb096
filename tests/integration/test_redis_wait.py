"""A worker's wait right after an empty claim uses what that claim saw (no PROBE).

Against the real server (``OFFLOAD_TEST_REDIS_URL``), in a namespace of
each test's own.
"""

from __future__ import annotations

import threading
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


def test_a_wait_that_claims_starts_its_lease_at_most_a_share_of_it_early(
    broker: RedisBroker,
) -> None:
    # The claim behind the BLPOP takes its time as the wait begins: the wait
    # blocks at most WAIT_SHARE of the lease at a time, so a lease it claims
    # is never much shorter than asked for, however long the worker waited.
    lease = 2.0
    assert broker.claim(None, 1, lease) == []
    answer: list[list[object]] = []
    waiter = threading.Thread(
        target=lambda: answer.append(list(broker.wait_and_claim(30, None, 1, lease))), daemon=True
    )
    waiter.start()
    time.sleep(1.0)  # several of the wait's blocks (0.2 s each) go by
    enqueued = time.time()
    job = message()
    broker.enqueue([job])
    waiter.join(10)
    (delivery,) = answer[0]
    assert delivery.message.id == job.id  # type: ignore[attr-defined]
    shortest = enqueued + lease * (1 - broker.WAIT_SHARE) - 0.3  # 0.3 s: the client's own steps
    assert delivery.lease_until >= shortest  # type: ignore[attr-defined]


def test_after_a_claim_that_emptied_the_queue_a_wait_needs_no_probe_nor_claim(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim that found fewer jobs than asked says when something next comes
    # due: the wait after it goes straight to its BLPOP (with the claim behind).
    monkeypatch.setattr(broker, "FRESH", 30.0)  # how fresh that view must be: not timed here
    broker.enqueue([message()])
    assert len(broker.claim(None, 8, 30)) == 1  # fewer than asked: the queue is empty

    def refuse(*args: object) -> object:
        raise AssertionError("no PROBE nor claim of its own after a claim that emptied the queue")

    monkeypatch.setattr(broker, "_probe", refuse)
    broker.wait_for_messages(0.05)  # timed out: nothing woke it, and it did not PROBE
    assert len(broker.claim(None, 8, 30)) == 0
    monkeypatch.setattr(broker, "claim", refuse)
    answer: list[list[object]] = []
    waiter = threading.Thread(
        target=lambda: answer.append(list(broker.wait_and_claim(30, None, 8, 30))), daemon=True
    )
    waiter.start()
    time.sleep(0.05)
    job = message()
    broker.enqueue([job])
    waiter.join(10)
    assert [d.message.id for d in answer[0]] == [job.id]  # type: ignore[attr-defined]
