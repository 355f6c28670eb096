"""Outcomes: acks and their results, nacks and retries, TTLs, the dead-letter set."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory, claim_ids

from offload._brokers._base import Lease
from offload._message import DEFAULT_MAX_DELIVERIES, Delivery, ErrorInfo, JobInfo, Outcome, State
from offload.testing import FakeClock

BOOM = ErrorInfo("builtins.ValueError", "boom", "Traceback (most recent call last): ...")


def claim_one(broker: ContractBroker, lease: float = LEASE) -> Delivery:
    (delivery,) = broker.claim(None, 1, lease)
    return delivery


def info(broker: ContractBroker, job_id: str) -> JobInfo:
    found = broker.inspector.job(job_id)
    assert found is not None, f"job {job_id} is unknown"
    return found


def test_an_ack_stores_the_result(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message()
    broker.enqueue([m])
    delivery = claim_one(broker)
    clock.advance(2)
    assert broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"42")) is True
    job = info(broker, m.id)
    assert (job.state, job.result, job.attempt, job.error) == (State.SUCCEEDED, b"42", 1, None)
    assert job.finished == pytest.approx(clock.now())
    assert job.payload == m.payload
    assert claim_ids(broker) == []


def test_a_second_ack_of_one_delivery_is_refused(
    broker: ContractBroker, message: MessageFactory
) -> None:
    broker.enqueue([message()])
    delivery = claim_one(broker)
    assert broker.ack(delivery, Outcome(State.SUCCEEDED)) is True
    assert broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM)) is False
    assert broker.nack(delivery, None) is False
    assert broker.extend(delivery, LEASE) is Lease.LOST


def test_a_failure_keeps_its_error(broker: ContractBroker, message: MessageFactory) -> None:
    m = message()
    broker.enqueue([m])
    assert broker.ack(claim_one(broker), Outcome(State.FAILED, error_info=BOOM)) is True
    job = info(broker, m.id)
    assert (job.state, job.error) == (State.FAILED, BOOM)


def test_a_failure_given_as_an_exception_is_kept_as_text(
    broker: ContractBroker, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    try:
        raise KeyError("missing")
    except KeyError as error:
        outcome = Outcome.failure(error)
    broker.ack(claim_one(broker), outcome)
    error_info = info(broker, m.id).error
    assert error_info is not None
    assert error_info.type == "builtins.KeyError"
    assert "missing" in error_info.message
    assert "Traceback" in error_info.traceback


def test_a_nack_with_an_error_waits_to_retry(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message()
    broker.enqueue([m])
    delivery = claim_one(broker)
    assert broker.nack(delivery, clock.now() + 60, error=BOOM) is True
    job = info(broker, m.id)
    assert (job.state, job.error, job.attempt) == (State.RETRYING, BOOM, 1)
    clock.advance(59)
    assert claim_ids(broker) == []
    clock.advance(1)
    again = claim_one(broker)
    assert (again.message.id, again.attempt) == (m.id, 2)
    assert info(broker, m.id).state is State.RUNNING
    assert info(broker, m.id).error == BOOM, "the last error stays while it runs again"


def test_a_nack_without_an_error_queues_it_now(
    broker: ContractBroker, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    assert broker.nack(claim_one(broker), None) is True
    job = info(broker, m.id)
    assert (job.state, job.attempt, job.error) == (State.QUEUED, 1, None)
    assert claim_one(broker).attempt == 2


def test_a_release_without_penalty_gives_the_attempt_back(
    broker: ContractBroker, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    assert broker.nack(claim_one(broker), None, penalty=False) is True
    assert info(broker, m.id).attempt == 0
    assert claim_one(broker).attempt == 1


def test_a_success_after_a_retry_clears_the_error(
    broker: ContractBroker, message: MessageFactory
) -> None:
    m = message()
    broker.enqueue([m])
    broker.nack(claim_one(broker), None, error=BOOM)
    broker.ack(claim_one(broker), Outcome(State.SUCCEEDED, payload=b"1"))
    job = info(broker, m.id)
    assert (job.state, job.attempt, job.error) == (State.SUCCEEDED, 2, None)


def test_results_expire_after_their_ttl(
    make_broker: Callable[..., ContractBroker], message: MessageFactory, clock: FakeClock
) -> None:
    broker = make_broker(result_ttl=100)
    default, short = message(), message(result_ttl=10)
    broker.enqueue([default, short])
    for delivery in broker.claim(None, 2, LEASE):
        broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"r"))
    clock.advance(11)
    assert broker.inspector.prune() == 1
    assert broker.inspector.job(short.id) is None
    assert info(broker, default.id).result == b"r"
    clock.advance(90)
    assert broker.inspector.prune() == 1
    assert broker.inspector.job(default.id) is None
    assert broker.inspector.prune() == 0


def test_cancelled_jobs_expire_too(
    make_broker: Callable[..., ContractBroker], message: MessageFactory, clock: FakeClock
) -> None:
    broker = make_broker(result_ttl=10)
    m = message()
    broker.enqueue([m])
    broker.ack(claim_one(broker), Outcome.cancelled())
    assert info(broker, m.id).state is State.CANCELLED
    clock.advance(11)
    assert broker.inspector.prune() == 1


def test_a_zero_ttl_keeps_no_result(
    make_broker: Callable[..., ContractBroker], message: MessageFactory
) -> None:
    broker = make_broker(result_ttl=0)
    m = message()
    broker.enqueue([m])
    broker.ack(claim_one(broker), Outcome(State.SUCCEEDED, payload=b"r"))
    assert broker.inspector.job(m.id) is None
    assert broker.inspector.counts() == {}


def test_failed_jobs_survive_pruning_until_purged(
    make_broker: Callable[..., ContractBroker], message: MessageFactory, clock: FakeClock
) -> None:
    broker = make_broker(result_ttl=10)
    dead, done = message(), message()
    broker.enqueue([dead, done])
    first, second = broker.claim(None, 2, LEASE)
    broker.ack(first, Outcome(State.FAILED, error_info=BOOM))
    broker.ack(second, Outcome(State.SUCCEEDED))
    clock.advance(10 * 86400)
    assert broker.inspector.prune() == 1
    assert info(broker, dead.id).state is State.FAILED
    assert broker.inspector.purge(State.FAILED) == 1
    assert broker.inspector.job(dead.id) is None
    assert broker.inspector.purge(State.FAILED) == 0


def test_purge_takes_a_queue(broker: ContractBroker, message: MessageFactory) -> None:
    in_a, in_b = message(queue="a"), message(queue="b")
    broker.enqueue([in_a, in_b])
    for delivery in broker.claim(None, 2, LEASE):
        broker.ack(delivery, Outcome(State.SUCCEEDED))
    assert broker.inspector.purge(State.SUCCEEDED, queue="a") == 1
    assert broker.inspector.job(in_a.id) is None
    assert broker.inspector.job(in_b.id) is not None


def test_purge_refuses_live_states(broker: ContractBroker) -> None:
    with pytest.raises(ValueError, match="finished"):
        broker.inspector.purge(State.QUEUED)


def test_dead_letter_after_max_deliveries(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message(max_deliveries=2)
    broker.enqueue([m])
    for attempt in (1, 2):
        assert claim_one(broker, lease=10).attempt == attempt
        clock.advance(11)  # the worker died: its lease lapses
    assert claim_ids(broker) == [], "delivered twice already"
    job = info(broker, m.id)
    assert job.state is State.FAILED
    assert job.error is not None
    assert "delivered 2 times" in job.error.message
    assert "crash" in job.error.message
    clock.advance(30 * 86400)
    broker.inspector.prune()
    assert info(broker, m.id).state is State.FAILED, "the dead-letter set stays"


def test_a_job_without_max_deliveries_is_dead_lettered_after_the_default(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message()  # max_deliveries unset, as anyone writing to the broker may leave it
    broker.enqueue([m])
    for attempt in range(1, DEFAULT_MAX_DELIVERIES + 1):
        assert claim_one(broker, lease=10).attempt == attempt
        clock.advance(11)  # the worker died (a message that kills it): its lease lapses
    assert claim_ids(broker) == [], "not delivered forever"
    job = info(broker, m.id)
    assert job.state is State.FAILED
    assert job.error is not None and job.error.type.endswith("WorkerLost")
    assert f"delivered {DEFAULT_MAX_DELIVERIES} times" in job.error.message


def test_max_deliveries_does_not_stop_a_live_lease(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message(max_deliveries=1)
    broker.enqueue([m])
    delivery = claim_one(broker, lease=10)
    clock.advance(5)
    assert claim_ids(broker) == []
    assert info(broker, m.id).state is State.RUNNING
    assert broker.ack(delivery, Outcome(State.SUCCEEDED)) is True
