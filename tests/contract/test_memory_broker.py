"""The memory broker beyond the contract: the in-process mode's ``result_ttl=0``."""

from __future__ import annotations

import math
import threading
import time

from contract_support import MessageFactory

from offload._brokers import MemoryBroker
from offload._message import ErrorInfo, Message, Outcome, State, new_id
from offload.testing import FakeClock


def test_a_zero_ttl_leaves_nothing_behind(clock: FakeClock) -> None:
    broker = MemoryBroker(clock, result_ttl=0)
    ids = []
    for i in range(3000):
        # As the in-process app sends calls: live arguments, no key, no lease.
        m = Message(new_id(), "tasks.work", (i,), {})
        ids += broker.enqueue([m])
        (delivery,) = broker.claim(None, 1, math.inf)
        if i % 3 == 0:
            assert broker.nack(delivery, None)
            (delivery,) = broker.claim(None, 1, math.inf)
        outcome = Outcome.success(i) if i % 2 else Outcome.failure(ValueError(i))
        assert broker.ack(delivery, outcome)
    assert broker.counts() == {}, "not even failures: the caller's handle has them"
    assert all(broker.job(job_id) is None for job_id in ids[::100])


def test_a_zero_ttl_forgets_keys_and_errors(clock: FakeClock, message: MessageFactory) -> None:
    broker = MemoryBroker(clock, result_ttl=0)
    m = message(key="k")
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, 30)
    broker.nack(delivery, None, error=ErrorInfo("E", "e", ""))
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    assert broker.counts() == {}
    again = message(key="k")
    assert broker.enqueue([again]) == [again.id]


def test_a_message_ttl_overrides_a_zero_default(clock: FakeClock, message: MessageFactory) -> None:
    broker = MemoryBroker(clock, result_ttl=0)
    kept = message(result_ttl=60)
    broker.enqueue([kept])
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"r"))
    job = broker.job(kept.id)
    assert job is not None and job.result == b"r"
    clock.advance(61)
    assert broker.prune() == 1


def test_the_default_constructor_still_works() -> None:
    broker = MemoryBroker()
    m = Message(new_id(), "tasks.work", (), {})
    assert broker.enqueue([m]) == [m.id]
    assert [d.message.id for d in broker.claim(None, 1, 30)] == [m.id]


# -- the inbox: single plain calls are appended without the broker's lock ------


def plain(i: int = 0) -> Message:
    return Message(new_id(), "tasks.work", (i,), {})


def test_a_call_in_the_inbox_is_seen_by_every_inspection(clock: FakeClock) -> None:
    broker = MemoryBroker(clock)
    (job_id,) = broker.enqueue([plain()])
    job = broker.job(job_id)
    assert job is not None and job.state is State.QUEUED
    assert broker.counts() == {"default": {State.QUEUED: 1}}
    assert [info.id for info in broker.jobs(State.QUEUED)] == [job_id]
    assert broker.cancel(job_id)
    assert broker.claim(None, 1, 30) == []


def test_calls_keep_their_order_across_the_inbox_and_batches(clock: FakeClock) -> None:
    broker = MemoryBroker(clock)
    first, batch, last = plain(1), [plain(2), plain(3)], plain(4)
    broker.enqueue([first])  # the inbox
    broker.enqueue(batch)  # under the lock: the inbox goes first
    broker.enqueue([last])
    claimed = broker.claim(None, 4, 30)
    assert [d.message.args for d in claimed] == [(1,), (2,), (3,), (4,)]


def test_a_waiting_worker_is_always_woken_by_an_enqueue() -> None:
    # A lost wake-up would leave the waiter asleep for its whole timeout.
    broker = MemoryBroker()
    timeout = 10.0
    started = time.monotonic()
    for i in range(300):
        waiter = threading.Thread(target=broker.wait_for_messages, args=(timeout,))
        waiter.start()
        broker.enqueue([plain(i)])
        waiter.join(timeout)
        assert broker.claim(None, 1, 30), f"round {i}: the call was not claimable"
    assert time.monotonic() - started < timeout, "a waiter slept through an enqueue"
