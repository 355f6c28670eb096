"""Claiming: what is claimable, in which order, how many, under which lease."""

from __future__ import annotations

import threading
import time

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory, claim_ids

from offload._brokers import Inspector, Waker
from offload._brokers._base import Lease
from offload._message import Outcome, State
from offload.testing import FakeClock


def test_every_broker_offers_both_capabilities(broker: ContractBroker) -> None:
    assert isinstance(broker.inspector, Inspector)
    assert isinstance(broker, Waker)


def test_enqueue_returns_the_ids_in_order(broker: ContractBroker, message: MessageFactory) -> None:
    batch = [message() for _ in range(3)]
    assert broker.enqueue(batch) == [m.id for m in batch]


def test_a_message_waits_for_its_eta(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    later = message(eta=clock.now() + 20)
    sooner = message(eta=clock.now() + 10)
    now = message()
    broker.enqueue([later, sooner, now])
    assert claim_ids(broker) == [now.id]
    clock.advance(10)
    assert claim_ids(broker) == [sooner.id]
    clock.advance(9)
    assert claim_ids(broker) == []
    clock.advance(1)
    assert claim_ids(broker) == [later.id]


def test_due_messages_come_in_eta_order(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    third, first, second = (message(eta=clock.now() + s) for s in (30, 10, 20))
    broker.enqueue([third, first, second])
    clock.advance(60)
    assert claim_ids(broker) == [first.id, second.id, third.id]


def test_higher_priority_first(broker: ContractBroker, message: MessageFactory) -> None:
    low, high, middle, negative = (message(priority=p) for p in (0, 9, 5, -1))
    broker.enqueue([low, high, middle, negative])
    assert claim_ids(broker) == [high.id, middle.id, low.id, negative.id]


def test_first_in_first_out_within_a_priority(
    broker: ContractBroker, message: MessageFactory
) -> None:
    batch = [message() for _ in range(5)]
    for m in batch:  # one by one, as calls arrive
        broker.enqueue([m])
    later = [message() for _ in range(5)]
    broker.enqueue(later)
    assert claim_ids(broker, limit=3) == [m.id for m in batch[:3]]
    assert claim_ids(broker) == [m.id for m in batch[3:] + later]


def test_queues_are_served_in_the_order_given(
    broker: ContractBroker, message: MessageFactory
) -> None:
    a_high = message(queue="a", priority=9)
    b_low = message(queue="b", priority=0)
    c = message(queue="c")
    broker.enqueue([a_high, b_low, c])
    assert claim_ids(broker, queues=["b", "a"]) == [b_low.id, a_high.id]
    assert claim_ids(broker, queues=["a", "b"]) == []
    assert claim_ids(broker, queues=["c"]) == [c.id]


def test_all_queues_by_priority_when_none_are_named(
    broker: ContractBroker, message: MessageFactory
) -> None:
    a_low = message(queue="a", priority=1)
    b_high = message(queue="b", priority=7)
    c_mid = message(queue="c", priority=4)
    broker.enqueue([a_low, b_high, c_mid])
    assert claim_ids(broker) == [b_high.id, c_mid.id, a_low.id]


def test_unknown_queue_claims_nothing(broker: ContractBroker, message: MessageFactory) -> None:
    broker.enqueue([message()])
    assert claim_ids(broker, queues=["nope"]) == []


def test_claims_respect_the_limit(broker: ContractBroker, message: MessageFactory) -> None:
    batch = [message() for _ in range(10)]
    broker.enqueue(batch)
    taken = [claim_ids(broker, limit=3) for _ in range(5)]
    assert [len(ids) for ids in taken] == [3, 3, 3, 1, 0]
    assert [i for ids in taken for i in ids] == [m.id for m in batch]


def test_a_claim_leases_and_counts_the_attempt(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    broker.enqueue([message()])
    (delivery,) = broker.claim(None, 1, LEASE)
    assert delivery.attempt == 1
    assert delivery.lease_until == pytest.approx(clock.now() + LEASE)
    assert broker.claim(None, 1, LEASE) == [], "a leased message is not claimable"


def test_tokens_differ_between_jobs(broker: ContractBroker, message: MessageFactory) -> None:
    # A worker keys what it runs by token.
    broker.enqueue([message() for _ in range(20)])
    tokens = [d.token for d in broker.claim(None, 20, LEASE)]
    assert len(set(tokens)) == 20


def test_a_lapsed_lease_is_claimed_again_with_a_new_token(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message()
    broker.enqueue([m])
    (first,) = broker.claim(None, 1, 10)
    clock.advance(9)
    assert broker.claim(None, 1, 10) == []
    clock.advance(2)
    (second,) = broker.claim(None, 1, 10)
    assert second.message.id == m.id
    assert second.attempt == 2
    assert second.token != first.token


def test_a_stale_delivery_is_refused_after_a_reclaim(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message()
    broker.enqueue([m])
    (stale,) = broker.claim(None, 1, 10)
    clock.advance(11)
    (current,) = broker.claim(None, 1, 10)
    assert broker.extend(stale, 10) is Lease.LOST
    assert broker.nack(stale, None) is False
    assert broker.ack(stale, Outcome(State.SUCCEEDED, payload=b"old")) is False
    assert broker.ack(current, Outcome(State.SUCCEEDED, payload=b"new")) is True
    info = broker.inspector.job(m.id)
    assert info is not None
    assert (info.state, info.attempt, info.result) == (State.SUCCEEDED, 2, b"new")


def test_extend_keeps_a_lease_from_lapsing(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    broker.enqueue([message()])
    (delivery,) = broker.claim(None, 1, 10)
    clock.advance(8)
    assert broker.extend(delivery, 10) is Lease.HELD
    assert delivery.lease_until == pytest.approx(clock.now() + 10)
    clock.advance(8)
    assert broker.claim(None, 1, 10) == [], "renewed 8 s ago for 10 s"
    clock.advance(3)
    assert [d.attempt for d in broker.claim(None, 1, 10)] == [2]


def test_waiting_returns_when_a_message_arrives(
    broker: ContractBroker, message: MessageFactory
) -> None:
    returned = threading.Event()

    def wait() -> None:
        broker.wait_for_messages(30)
        returned.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.05)  # real time, not a timing assertion: lets the waiter block first
    broker.enqueue([message()])
    assert returned.wait(5), "an enqueue must wake a waiting worker"
    waiter.join(5)


def test_interrupt_wakes_a_waiter(broker: ContractBroker) -> None:
    returned = threading.Event()

    def wait() -> None:
        broker.wait_for_messages(30)
        returned.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.05)
    broker.interrupt()
    assert returned.wait(5)
    waiter.join(5)


def test_threads_sharing_a_broker_claim_each_job_once(
    broker: ContractBroker, message: MessageFactory
) -> None:
    # Claims and acks that meet may share a write (group commit); each caller
    # must still get its own answer, and no job may be claimed twice.
    ids = broker.enqueue([message() for _ in range(400)])
    seen: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        while deliveries := broker.claim(None, 1, LEASE):
            for delivery in deliveries:
                seen.append(delivery.message.id)
                if not broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"1")):
                    refused.append(delivery.message.id)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(seen) == sorted(ids), "every job claimed exactly once"
    assert refused == []
    assert isinstance(broker.inspector, Inspector)
    assert broker.inspector.counts() == {"default": {State.SUCCEEDED: 400}}
