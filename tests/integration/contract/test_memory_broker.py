"""The memory broker beyond the contract: the in-process mode's ``result_ttl=0``."""

from __future__ import annotations

import math
import sys
import threading
import time

from contract_support import MessageFactory

from offload._brokers import MemoryBroker
from offload._brokers._base import WorkerInfo
from offload._message import Delivery, ErrorInfo, Message, Outcome, State, new_id
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
    assert broker.inspector.counts() == {}, "not even failures: the caller's handle has them"
    assert all(broker.inspector.job(job_id) is None for job_id in ids[::100])


def test_a_zero_ttl_forgets_keys_and_errors(clock: FakeClock, message: MessageFactory) -> None:
    broker = MemoryBroker(clock, result_ttl=0)
    m = message(key="k")
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, 30)
    broker.nack(delivery, None, error=ErrorInfo("E", "e", ""))
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    assert broker.inspector.counts() == {}
    again = message(key="k")
    assert broker.enqueue([again]) == [again.id]


def test_a_message_ttl_overrides_a_zero_default(clock: FakeClock, message: MessageFactory) -> None:
    broker = MemoryBroker(clock, result_ttl=0)
    kept = message(result_ttl=60)
    broker.enqueue([kept])
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"r"))
    job = broker.inspector.job(kept.id)
    assert job is not None and job.result == b"r"
    clock.advance(61)
    assert broker.inspector.prune() == 1


def test_the_default_constructor_still_works() -> None:
    broker = MemoryBroker()
    m = Message(new_id(), "tasks.work", (), {})
    assert broker.enqueue([m]) == [m.id]
    assert [d.message.id for d in broker.claim(None, 1, 30)] == [m.id]


def _running(broker: MemoryBroker, count: int) -> list[Delivery]:
    for i in range(count):
        broker.enqueue([Message(new_id(), "tasks.work", (i,), {})])
    return broker.claim(None, count, math.inf)


def test_unlocked_acks_are_fenced_and_end_a_cancel_request() -> None:
    broker = MemoryBroker(result_ttl=0)
    first, second = _running(broker, 2)
    stale = Delivery(first.message, first.token + 1000, math.inf)
    assert not broker.ack(stale, Outcome(State.SUCCEEDED)), "another token: fenced off"
    assert broker.inspector.cancel(first.message.id), "running: a request"
    assert broker.ack(first, Outcome(State.SUCCEEDED))
    assert broker.cancel_requested == set(), "the request ended with its job"
    assert not broker.ack(first, Outcome(State.SUCCEEDED)), "acked once only"
    assert broker.inspector.counts() == {"default": {State.RUNNING: 1}}
    assert broker.ack(second, Outcome(State.SUCCEEDED))


def test_reading_the_lease_table_while_threads_ack_without_the_lock() -> None:
    # In-process acks pop the lease table without the broker's lock: every
    # reader of the table (inspection, the registry's heartbeat, reclaiming
    # lapsed leases) must read a snapshot, or iterating it would raise.
    broker = MemoryBroker(result_ttl=0)
    info = WorkerInfo("w", "host", 1, (), "thread", 1, time.time(), time.time(), ())
    broker.registry.register(info, 60)  # its claims are held: the heartbeat reads the table
    deliveries = _running(broker, 20_000)
    broker.enqueue([Message(new_id(), "tasks.lapsing", (), {})])
    errors: list[BaseException] = []

    def ack(part: list[Delivery]) -> None:
        try:
            for delivery in part:
                assert broker.ack(delivery, Outcome(State.SUCCEEDED))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=ack, args=(deliveries[i::4],)) for i in range(4)]
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns inside every loop over the table
    try:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            broker.inspector.counts()
            broker.registry.heartbeat(info, 60)
            # A lease that lapses at once: the next claim walks the table for it.
            broker.claim(None, 1, 0.0001)
    finally:
        sys.setswitchinterval(switching)
        for thread in threads:
            thread.join()
    assert errors == []
    running = broker.inspector.counts().get("default", {}).get(State.RUNNING, 0)
    assert running <= 1, "all acked but the lapsing one"


def test_enqueue_and_claim_leases_a_new_message_at_once_when_nothing_waits() -> None:
    broker = MemoryBroker(result_ttl=0)
    m = Message(new_id(), "tasks.work", (), {})
    (delivery,) = broker.enqueue_and_claim(m, None, 3, math.inf)
    assert delivery.message is m and delivery.attempt == 1
    job = broker.inspector.job(m.id)
    assert job is not None and job.state is State.RUNNING


def test_enqueue_and_claim_keeps_the_claim_order_when_others_wait(clock: FakeClock) -> None:
    broker = MemoryBroker(clock, result_ttl=0)
    older = Message(new_id(), "tasks.work", (), {})
    urgent = Message(new_id(), "tasks.work", (), {}, priority=5)
    due = Message(new_id(), "tasks.work", (), {})
    due.eta = clock.now() + 1
    broker.enqueue([older, urgent, due])
    clock.advance(2)  # ``due`` is claimable now, from the delayed heap
    new = Message(new_id(), "tasks.work", (), {})
    claimed = broker.enqueue_and_claim(new, None, 2, math.inf)
    assert [d.message for d in claimed] == [urgent, older], "priority, then age; the new one waits"
    assert [d.message for d in broker.claim(None, 5, math.inf)] == [due, new]


def test_enqueue_and_claim_with_no_room_or_named_queues_only_stores() -> None:
    broker = MemoryBroker(result_ttl=0)
    stored = Message(new_id(), "tasks.work", (), {})
    assert broker.enqueue_and_claim(stored, None, 0, math.inf) == []
    other = Message(new_id(), "tasks.work", (), {}, "other")
    claimed = broker.enqueue_and_claim(other, ["default"], 5, math.inf)
    assert [d.message for d in claimed] == [stored], "only the queues asked for"
    counts = broker.inspector.counts()
    assert counts == {"default": {State.RUNNING: 1}, "other": {State.QUEUED: 1}}
