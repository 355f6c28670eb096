"""Ack and claim in one step (the ``AckAndClaim`` capability).

``ack_and_claim(delivery, outcome, queues, limit, lease)`` must be exactly
``ack`` followed by ``claim``: the ack recorded (or fenced off) as ``ack``
would, the claim obeying everything ``claim`` promises. A broker without
the capability (the memory broker: its calls cost nothing) is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory, claim_ids

from offload._brokers._base import Lease, Registering, WorkerInfo
from offload._brokers._claiming import AckAndClaim
from offload._message import Delivery, ErrorInfo, JobInfo, Outcome, State
from offload.testing import FakeClock

BOOM = ErrorInfo("builtins.ValueError", "boom", "Traceback (most recent call last): ...")


@pytest.fixture
def both(broker: ContractBroker) -> AckAndClaim:
    if not isinstance(broker, AckAndClaim):
        pytest.skip(f"{type(broker).__name__} acks and claims in separate calls")
    return broker


def info(broker: ContractBroker, job_id: str) -> JobInfo:
    found = broker.inspector.job(job_id)
    assert found is not None, f"job {job_id} is unknown"
    return found


def claim_one(broker: ContractBroker, lease: float = LEASE) -> Delivery:
    (delivery,) = broker.claim(None, 1, lease)
    return delivery


# -- the ack -----------------------------------------------------------------------


def test_the_ack_stores_the_result_and_the_next_message_is_claimed(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    first, second = message(), message()
    broker.enqueue([first, second])
    delivery = claim_one(broker)
    clock.advance(2)
    acked, claimed = both.ack_and_claim(
        delivery, Outcome(State.SUCCEEDED, payload=b"42"), None, 1, LEASE
    )
    assert acked is True
    assert [d.message.id for d in claimed] == [second.id]
    job = info(broker, first.id)
    assert (job.state, job.result, job.attempt, job.error) == (State.SUCCEEDED, b"42", 1, None)
    assert job.finished == pytest.approx(clock.now())
    assert info(broker, second.id).state is State.RUNNING
    assert claim_ids(broker) == [], "the finished job is not claimable, the next one is leased"


@pytest.mark.parametrize(
    "outcome",
    [Outcome(State.FAILED, error_info=BOOM), Outcome.cancelled()],
    ids=["failed", "cancelled"],
)
def test_every_final_outcome_is_recorded_as_ack_would(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, outcome: Outcome
) -> None:
    m = message()
    broker.enqueue([m])
    acked, claimed = both.ack_and_claim(claim_one(broker), outcome, None, 1, LEASE)
    assert (acked, claimed) == (True, [])
    job = info(broker, m.id)
    assert job.state is outcome.state
    assert job.error == outcome.error_info


def test_a_failure_given_as_an_exception_is_kept_as_text(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    try:
        raise KeyError("missing")
    except KeyError as error:
        outcome = Outcome.failure(error)
    both.ack_and_claim(claim_one(broker), outcome, None, 1, LEASE)
    error_info = info(broker, m.id).error
    assert error_info is not None
    assert error_info.type == "builtins.KeyError"
    assert "missing" in error_info.message


def test_a_success_after_a_retry_clears_the_error(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    broker.nack(claim_one(broker), None, error=BOOM)
    both.ack_and_claim(claim_one(broker), Outcome(State.SUCCEEDED, payload=b"1"), None, 1, LEASE)
    job = info(broker, m.id)
    assert (job.state, job.attempt, job.error) == (State.SUCCEEDED, 2, None)


def test_a_zero_ttl_keeps_no_result(
    make_broker: Callable[..., ContractBroker], message: MessageFactory
) -> None:
    broker = make_broker(result_ttl=0)
    if not isinstance(broker, AckAndClaim):
        pytest.skip(f"{type(broker).__name__} acks and claims in separate calls")
    m, other = message(), message()
    broker.enqueue([m, other])
    acked, claimed = broker.ack_and_claim(claim_one(broker), Outcome.success(None), None, 5, LEASE)
    assert acked is True
    assert [d.message.id for d in claimed] == [other.id]
    assert broker.inspector.job(m.id) is None


def test_a_stale_token_records_nothing_but_still_claims(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    m, waiting = message(priority=5), message()
    broker.enqueue([m, waiting])
    stale = claim_one(broker, lease=10)
    clock.advance(11)
    current = claim_one(broker, lease=10)
    assert current.message.id == m.id, "the lapsed lease comes back first (higher priority)"
    acked, claimed = both.ack_and_claim(
        stale, Outcome(State.SUCCEEDED, payload=b"old"), None, 5, LEASE
    )
    assert acked is False
    assert [d.message.id for d in claimed] == [waiting.id]
    job = info(broker, m.id)
    assert (job.state, job.attempt, job.result) == (State.RUNNING, 2, None)
    assert broker.extend(current, LEASE) is Lease.HELD, "the newer attempt keeps its lease"
    assert broker.ack(current, Outcome(State.SUCCEEDED, payload=b"new")) is True
    assert info(broker, m.id).result == b"new"


def test_a_second_ack_of_one_delivery_is_refused(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    delivery = claim_one(broker)
    assert both.ack_and_claim(delivery, Outcome(State.SUCCEEDED), None, 1, LEASE) == (True, [])
    again = both.ack_and_claim(delivery, Outcome(State.FAILED, error_info=BOOM), None, 1, LEASE)
    assert again == (False, [])
    assert info(broker, m.id).state is State.SUCCEEDED


# -- the claim ---------------------------------------------------------------------


def test_the_claim_leases_counts_the_attempt_and_issues_a_new_token(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    broker.enqueue([message() for _ in range(21)])
    running = broker.claim(None, 1, LEASE)[0]
    _, claimed = both.ack_and_claim(running, Outcome.success(None), None, 20, 7.0)
    assert len(claimed) == 20
    assert {d.attempt for d in claimed} == {1}
    assert [d.lease_until for d in claimed] == [pytest.approx(clock.now() + 7.0)] * 20
    tokens = {d.token for d in claimed} | {running.token}
    assert len(tokens) == 21
    clock.advance(6)
    assert claim_ids(broker) == [], "leased for 7 s"
    clock.advance(2)
    assert len(claim_ids(broker)) == 20, "their 7 s lease lapsed"


def test_the_claim_respects_the_limit(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    batch = [message() for _ in range(6)]
    broker.enqueue(batch)
    (running,) = broker.claim(None, 1, LEASE)
    _, claimed = both.ack_and_claim(running, Outcome.success(None), None, 3, LEASE)
    assert [d.message.id for d in claimed] == [m.id for m in batch[1:4]]
    assert claim_ids(broker) == [m.id for m in batch[4:]]


def test_a_zero_limit_claims_nothing_and_still_acks(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    m, waiting = message(), message()
    broker.enqueue([m, waiting])
    acked, claimed = both.ack_and_claim(claim_one(broker), Outcome.success(None), None, 0, LEASE)
    assert (acked, claimed) == (True, [])
    assert info(broker, m.id).state is State.SUCCEEDED
    assert info(broker, waiting.id).state is State.QUEUED
    assert claim_ids(broker) == [waiting.id]


def test_nothing_to_claim_answers_an_empty_list(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    assert both.ack_and_claim(claim_one(broker), Outcome.success(None), None, 4, LEASE) == (
        True,
        [],
    )
    assert info(broker, m.id).state is State.SUCCEEDED


def test_the_claim_serves_queues_in_the_order_given_then_priority(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    a_zero = message(queue="a")
    a_high, a_low = message(queue="a", priority=9), message(queue="a", priority=1)
    b_low, c = message(queue="b", priority=0), message(queue="c", priority=99)
    broker.enqueue([a_zero, a_low, a_high, b_low, c])
    delivery = claim_one(broker)  # "c" first: priority across all queues
    assert delivery.message.id == c.id
    _, claimed = both.ack_and_claim(delivery, Outcome.success(None), ["b", "a"], 3, LEASE)
    assert [d.message.id for d in claimed] == [b_low.id, a_high.id, a_low.id]
    assert claim_ids(broker, queues=["c"]) == []
    assert claim_ids(broker, queues=["a"]) == [a_zero.id]


def test_the_claim_waits_for_an_eta(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    now, later = message(), message(eta=clock.now() + 10)
    broker.enqueue([now, later])
    assert both.ack_and_claim(claim_one(broker), Outcome.success(None), None, 5, LEASE) == (
        True,
        [],
    )
    clock.advance(10)
    assert claim_ids(broker) == [later.id]


def test_a_lapsed_lease_is_claimed_again_with_a_new_token(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    lost, mine = message(priority=1), message()
    broker.enqueue([lost, mine])
    first = claim_one(broker, lease=10)  # its worker dies
    assert first.message.id == lost.id
    running = claim_one(broker, lease=100)
    clock.advance(11)
    _, claimed = both.ack_and_claim(running, Outcome.success(None), None, 5, 10)
    assert [(d.message.id, d.attempt) for d in claimed] == [(lost.id, 2)]
    assert claimed[0].token != first.token
    assert broker.ack(first, Outcome.success(None)) is False, "the dead worker is fenced off"


def test_a_lapsed_message_delivered_max_deliveries_times_is_dead_lettered(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    poison, mine = message(max_deliveries=1, priority=1), message()
    broker.enqueue([poison, mine])
    assert claim_one(broker, lease=10).message.id == poison.id  # its worker dies
    running = claim_one(broker, lease=100)
    clock.advance(11)
    assert both.ack_and_claim(running, Outcome.success(None), None, 5, LEASE) == (True, [])
    job = info(broker, poison.id)
    assert job.state is State.FAILED
    assert job.error is not None
    assert "delivered 1 times" in job.error.message


def test_claims_are_held_by_the_registered_worker(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory, clock: FakeClock
) -> None:
    """A claim through a registered broker object is released when its worker lapses."""
    assert isinstance(broker, Registering)
    lapse = 10.0

    def worker(name: str) -> WorkerInfo:
        return WorkerInfo(f"h:1:{name}", "h", 1, (), "threads", 4, clock.now(), clock.now(), ())

    dead = worker("dead")
    broker.registry.register(dead, lapse)
    first, second = message(), message()
    broker.enqueue([first, second])
    _, (held,) = both.ack_and_claim(claim_one(broker), Outcome.success(None), None, 1, LEASE)
    assert held.message.id == second.id
    lease_end = held.lease_until
    alive = worker("alive")
    broker.registry.register(alive, lapse)
    clock.advance(lapse)
    broker.registry.heartbeat(alive._replace(last_seen=clock.now()), lapse)
    assert clock.now() < lease_end, "released long before its lease would have ended"
    (again,) = broker.claim(None, 1, LEASE)
    assert (again.message.id, again.attempt) == (second.id, 2)


def test_threads_acking_and_claiming_run_each_job_once(
    broker: ContractBroker, both: AckAndClaim, message: MessageFactory
) -> None:
    # Calls that meet may share a write (group commit); each must keep its own answer.
    ids = broker.enqueue([message() for _ in range(400)])
    seen: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        deliveries = broker.claim(None, 1, LEASE)
        while deliveries:
            (delivery,) = deliveries
            seen.append(delivery.message.id)
            acked, deliveries = both.ack_and_claim(
                delivery, Outcome(State.SUCCEEDED, payload=b"1"), None, 1, LEASE
            )
            if not acked:
                refused.append(delivery.message.id)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(seen) == sorted(ids), "every job claimed exactly once"
    assert refused == []
    assert broker.inspector.counts() == {"default": {State.SUCCEEDED: 400}}
