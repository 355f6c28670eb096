"""Limits: rate (GCRA tokens) and concurrency (slots held by running jobs), in the broker.

Every broker keeps them (``broker.limits``, the ``Limited`` capability), so
that a limit holds across every worker that shares the broker. Time is the
fake clock: a refusal's wait is exact.
"""

from __future__ import annotations

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory

from offload._brokers._base import Limited, LimitStore
from offload._message import Delivery, Outcome, State
from offload.testing import FakeClock


def store(broker: ContractBroker) -> LimitStore:
    assert isinstance(broker, Limited), f"{type(broker).__name__} keeps no limits"
    return broker.limits


def running(broker: ContractBroker, message: MessageFactory, count: int) -> list[Delivery]:
    broker.enqueue([message() for _ in range(count)])
    deliveries = broker.claim(None, count, LEASE)
    assert len(deliveries) == count
    return deliveries


# -- rates -------------------------------------------------------------------------


def test_a_rate_lets_one_call_per_interval(broker: ContractBroker, clock: FakeClock) -> None:
    limits = store(broker)
    assert limits.take_token("r", 2.0, 0) == 0.0
    assert limits.take_token("r", 2.0, 0) == pytest.approx(2.0)
    clock.advance(1.0)
    assert limits.take_token("r", 2.0, 0) > 0, "half an interval later: still no token"
    clock.advance(3.0)
    assert limits.take_token("r", 2.0, 0) == 0.0


def test_a_burst_lets_that_many_more_at_once(broker: ContractBroker) -> None:
    limits = store(broker)
    answers = [limits.take_token("r", 1.0, 2) for _ in range(4)]
    assert answers[:3] == [0.0, 0.0, 0.0]
    assert answers[3] > 0


def test_refused_callers_get_successive_turns(broker: ContractBroker) -> None:
    limits = store(broker)
    assert limits.take_token("r", 1.0, 0) == 0.0
    waits = [limits.take_token("r", 1.0, 0) for _ in range(3)]
    assert waits == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)]


def test_no_window_sees_more_than_the_rate_and_the_burst(
    broker: ContractBroker, clock: FakeClock
) -> None:
    """Callers that try every 10 ms for 10 s: at most 5 + 2 go in any second."""
    limits = store(broker)
    start = clock.now()
    times: list[float] = []
    for _ in range(1000):
        if limits.take_token("r", 0.2, 2) == 0.0:
            times.append(clock.now() - start)
        clock.advance(0.01)
    assert 50 <= len(times) <= 50 + 2
    for first in times:
        assert sum(1 for t in times if first <= t < first + 1.0) <= 5 + 2


def test_rates_are_kept_per_name(broker: ContractBroker) -> None:
    limits = store(broker)
    assert limits.take_token("a", 10.0, 0) == 0.0
    assert limits.take_token("a", 10.0, 0) > 0
    assert limits.take_token("b", 10.0, 0) == 0.0, "another key has its own limit"


# -- concurrency -------------------------------------------------------------------


def test_slots_hold_the_limit(broker: ContractBroker, message: MessageFactory) -> None:
    limits = store(broker)
    a, b, c = (d.message.id for d in running(broker, message, 3))
    assert limits.take_slot("c", a, 2) == 0.0
    assert limits.take_slot("c", b, 2) == 0.0
    assert limits.take_slot("c", c, 2) > 0
    assert limits.take_slot("c", a, 2) == 0.0, "a holder asking again keeps its slot"
    assert limits.take_slot("c", c, 2) > 0
    limits.release_slot("c", a)
    assert limits.take_slot("c", c, 2) == 0.0


def test_slots_are_kept_per_name(broker: ContractBroker, message: MessageFactory) -> None:
    limits = store(broker)
    a, b = (d.message.id for d in running(broker, message, 2))
    assert limits.take_slot("x", a, 1) == 0.0
    assert limits.take_slot("x", b, 1) > 0
    assert limits.take_slot("y", b, 1) == 0.0


def test_a_finished_job_frees_its_slot(broker: ContractBroker, message: MessageFactory) -> None:
    limits = store(broker)
    first, second = running(broker, message, 2)
    assert limits.take_slot("c", first.message.id, 1) == 0.0
    assert limits.take_slot("c", second.message.id, 1) > 0
    assert broker.ack(first, Outcome(State.SUCCEEDED))
    assert limits.take_slot("c", second.message.id, 1) == 0.0, "no release needed"


def test_a_lapsed_lease_frees_its_slot(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    """A worker killed while it held a slot: the slot comes back with its lease."""
    limits = store(broker)
    broker.enqueue([message(queue="dies")])
    (dead,) = broker.claim(["dies"], 1, LEASE)
    assert limits.take_slot("c", dead.message.id, 1) == 0.0
    broker.enqueue([message()])
    (alive,) = broker.claim(["default"], 1, LEASE)
    assert limits.take_slot("c", alive.message.id, 1) > 0
    clock.advance(LEASE + 1)  # the first lease lapses; nobody claimed its job again yet
    assert broker.extend(alive, LEASE).value == "held"
    assert limits.take_slot("c", alive.message.id, 1) == 0.0


def test_a_refusal_waits_for_the_expected_end_of_a_hold(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    limits = store(broker)
    deliveries = running(broker, message, 3)
    a, b, c = (d.message.id for d in deliveries)
    assert limits.take_slot("c", a, 1) == 0.0
    clock.advance(4.0)
    limits.release_slot("c", a)  # held 4 s: the average hold so far
    assert limits.take_slot("c", b, 1) == 0.0
    clock.advance(1.0)
    assert limits.take_slot("c", c, 1) == pytest.approx(3.0), "b is expected to end at 4 s"
    assert limits.take_slot("c", c, 1) == pytest.approx(7.0), "the next refusal: a turn later"


def test_releasing_what_is_not_held_changes_nothing(
    broker: ContractBroker, message: MessageFactory
) -> None:
    limits = store(broker)
    a, b = (d.message.id for d in running(broker, message, 2))
    limits.release_slot("c", a)
    assert limits.take_slot("c", a, 1) == 0.0
    limits.release_slot("c", b)
    assert limits.take_slot("c", b, 1) > 0


def test_a_slot_given_back_unused_leaves_the_average_hold(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    limits = store(broker)
    a, b, c = (d.message.id for d in running(broker, message, 3))
    assert limits.take_slot("c", a, 1) == 0.0
    clock.advance(4.0)
    limits.release_slot("c", a)  # the average hold: 4 s
    assert limits.take_slot("c", b, 1) == 0.0
    limits.release_slot("c", b, ran=False)  # at once, but unused
    assert limits.take_slot("c", b, 1) == 0.0
    assert limits.take_slot("c", c, 1) == pytest.approx(4.0), "still 4 s"
