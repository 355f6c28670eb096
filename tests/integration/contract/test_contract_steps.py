"""Durable steps: a job's step results, kept for its later runs (``offload.step``).

Every durable broker keeps them (``StepStore`` on its inspector); an
in-process app keeps them in memory (the runner's ``JobServices``).
"""

from __future__ import annotations

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory

from offload._brokers._base import StepStore
from offload._message import ErrorInfo, Outcome, State
from offload.testing import FakeClock


def store_of(broker: ContractBroker) -> StepStore:
    inspector = broker.inspector
    if not isinstance(inspector, StepStore):
        pytest.skip(f"{type(broker).__name__}: an in-process app keeps steps in memory")
    return inspector


def test_a_step_s_result_is_kept_for_the_job_s_next_run(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (first,) = broker.claim(None, 1, LEASE)
    assert store.step_result(m.id, "charge") is None
    assert store.record_step(first, "charge", b'{"receipt": 7}')
    assert broker.nack(first, clock.now(), error=ErrorInfo("builtins.OSError", "down", ""))
    (second,) = broker.claim(None, 1, LEASE)
    assert second.attempt == 2
    assert store.step_result(m.id, "charge") == b'{"receipt": 7}'
    assert store.step_result(m.id, "email") is None


def test_a_step_keeps_its_first_result(broker: ContractBroker, message: MessageFactory) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, LEASE)
    assert store.record_step(delivery, "charge", b"1")
    assert store.record_step(delivery, "charge", b"2"), "the lease holds: recorded before"
    assert store.step_result(m.id, "charge") == b"1"


def test_a_worker_that_lost_the_lease_records_no_step(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (first,) = broker.claim(None, 1, LEASE)
    clock.advance(LEASE + 1)
    (second,) = broker.claim(None, 1, LEASE)
    assert not store.record_step(first, "charge", b"late")
    assert store.step_result(m.id, "charge") is None
    assert store.record_step(second, "charge", b"held")
    assert store.step_result(m.id, "charge") == b"held"


def test_steps_survive_a_retry_of_a_failed_job_and_go_with_the_job(
    broker: ContractBroker, message: MessageFactory
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, LEASE)
    store.record_step(delivery, "charge", b"receipt")
    broker.ack(delivery, Outcome(State.FAILED, error_info=ErrorInfo("x.E", "m", "")))
    assert broker.inspector.retry(m.id)  # offload retry: the job resumes
    assert store.step_result(m.id, "charge") == b"receipt"
    (again,) = broker.claim(None, 1, LEASE)
    broker.ack(again, Outcome(State.FAILED, error_info=ErrorInfo("x.E", "m", "")))
    assert broker.inspector.purge(State.FAILED) == 1
    assert store.step_result(m.id, "charge") is None


def test_step_results_are_bytes_kept_whole_and_names_any_text(
    broker: ContractBroker, message: MessageFactory
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, LEASE)
    data = bytes(range(256)) * 4
    name = "étape: 東京 🚀"
    assert store.record_step(delivery, name, data)
    assert store.step_result(m.id, name) == data
