"""A wait and the claim after it in one step (the ``WaitAndClaim`` capability).

``wait_and_claim(timeout, queues, limit, lease)`` must be ``wait_for_messages``
then ``claim``: what is claimable now is claimed at once; otherwise what
arrives while it waits is claimed as ``claim`` would (its limit, its queues,
leased), and ``interrupt()`` or the timeout end it. A broker without the
capability is skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory, claim_ids

from offload._brokers._claiming import WaitAndClaim
from offload._message import Delivery, State
from offload.testing import FakeClock


@pytest.fixture
def waiting(broker: ContractBroker) -> WaitAndClaim:
    if not isinstance(broker, WaitAndClaim):
        pytest.skip(f"{type(broker).__name__} waits and claims in separate calls")
    return broker


def in_thread(call: Callable[[], list[Delivery]]) -> Callable[[], list[Delivery]]:
    """Run ``call`` in a thread; the returned function joins it and gives its answer."""
    answer: list[list[Delivery]] = []
    thread = threading.Thread(target=lambda: answer.append(call()), daemon=True)
    thread.start()
    time.sleep(0.05)  # real time, not a timing assertion: lets the wait block first

    def result() -> list[Delivery]:
        thread.join(10)
        assert answer, "the wait did not return"
        return answer[0]

    return result


def test_what_is_claimable_now_is_claimed_at_once(
    broker: ContractBroker, waiting: WaitAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    first, second = message(), message()
    broker.enqueue([first, second])
    got = waiting.wait_and_claim(30, None, 5, LEASE)
    assert [d.message.id for d in got] == [first.id, second.id]
    assert all(d.lease_until == pytest.approx(clock.now() + LEASE) for d in got)
    assert claim_ids(broker) == []


def test_a_message_enqueued_during_the_wait_is_claimed_by_it(
    broker: ContractBroker, waiting: WaitAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    assert broker.claim(None, 8, LEASE) == []  # as a worker does before it waits
    result = in_thread(lambda: waiting.wait_and_claim(30, None, 8, LEASE))
    m = message()
    broker.enqueue([m])
    (delivery,) = result()
    assert (delivery.message.id, delivery.attempt) == (m.id, 1)
    assert delivery.lease_until == pytest.approx(clock.now() + LEASE)
    job = broker.inspector.job(m.id)
    assert job is not None and job.state is State.RUNNING
    assert claim_ids(broker) == [], "leased by the wait"


def test_the_wait_claims_no_more_than_its_limit(
    broker: ContractBroker, waiting: WaitAndClaim, message: MessageFactory
) -> None:
    assert broker.claim(None, 8, LEASE) == []
    result = in_thread(lambda: waiting.wait_and_claim(30, None, 1, LEASE))
    batch = [message() for _ in range(3)]
    broker.enqueue(batch)
    assert [d.message.id for d in result()] == [batch[0].id]
    assert sorted(claim_ids(broker)) == sorted(m.id for m in batch[1:])


def test_a_wait_for_named_queues_claims_only_from_them(
    broker: ContractBroker, waiting: WaitAndClaim, message: MessageFactory
) -> None:
    assert broker.claim(["a"], 8, LEASE) == []
    result = in_thread(lambda: waiting.wait_and_claim(30, ["a"], 8, LEASE))
    other, mine = message(queue="b"), message(queue="a")
    broker.enqueue([other])
    broker.enqueue([mine])
    assert [d.message.id for d in result()] == [mine.id]
    assert claim_ids(broker, queues=["b"]) == [other.id]


def test_interrupt_ends_the_wait_with_nothing_claimed(
    broker: ContractBroker, waiting: WaitAndClaim
) -> None:
    assert broker.claim(None, 8, LEASE) == []
    result = in_thread(lambda: waiting.wait_and_claim(30, None, 8, LEASE))
    broker.interrupt()
    assert result() == []


def test_the_wait_ends_at_its_timeout(broker: ContractBroker, waiting: WaitAndClaim) -> None:
    assert broker.claim(None, 8, LEASE) == []
    assert waiting.wait_and_claim(0.2, None, 8, LEASE) == []
