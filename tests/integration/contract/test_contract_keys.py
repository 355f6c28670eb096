"""Idempotency keys and all-or-none batches."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory

from offload._message import ErrorInfo, Outcome, State
from offload.testing import FakeClock


def total(broker: ContractBroker) -> int:
    return sum(n for per_state in broker.inspector.counts().values() for n in per_state.values())


def test_a_key_returns_the_queued_job(broker: ContractBroker, message: MessageFactory) -> None:
    first = message(key="user:42")
    assert broker.enqueue([first]) == [first.id]
    assert broker.enqueue([message(key="user:42")]) == [first.id]
    assert broker.enqueue([message(key="user:7")]) != [first.id]
    assert total(broker) == 2


def test_a_key_returns_the_running_and_the_retrying_job(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    first = message(key="k")
    broker.enqueue([first])
    (delivery,) = broker.claim(None, 1, LEASE)
    assert broker.enqueue([message(key="k")]) == [first.id]
    broker.nack(delivery, clock.now() + 60, error=ErrorInfo("E", "e", ""))
    assert broker.enqueue([message(key="k")]) == [first.id]
    assert total(broker) == 1


def test_a_finished_key_makes_a_new_job(broker: ContractBroker, message: MessageFactory) -> None:
    first = message(key="k")
    broker.enqueue([first])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    second = message(key="k")
    assert broker.enqueue([second]) == [second.id], "no reuse window by default"


def test_a_failed_key_makes_a_new_job_even_within_the_reuse_window(
    make_broker: Callable[..., ContractBroker], message: MessageFactory
) -> None:
    broker = make_broker(reuse_window=60)
    broker.enqueue([message(key="k")])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.ack(delivery, Outcome(State.FAILED, error_info=ErrorInfo("E", "e", "")))
    second = message(key="k")
    assert broker.enqueue([second]) == [second.id]


def test_a_success_is_reused_within_the_window(
    make_broker: Callable[..., ContractBroker], message: MessageFactory, clock: FakeClock
) -> None:
    broker = make_broker(reuse_window=60)
    first = message(key="report:2024")
    broker.enqueue([first])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"done"))
    clock.advance(59)
    assert broker.enqueue([message(key="report:2024")]) == [first.id]
    clock.advance(2)
    late = message(key="report:2024")
    assert broker.enqueue([late]) == [late.id]
    assert broker.enqueue([message(key="report:2024")]) == [late.id]


def test_one_key_twice_in_a_batch_is_one_job(
    broker: ContractBroker, message: MessageFactory
) -> None:
    a, b, c = message(key="k"), message(), message(key="k")
    assert broker.enqueue([a, b, c]) == [a.id, b.id, a.id]
    assert total(broker) == 2


def test_a_batch_is_stored_all_or_none(broker: ContractBroker, message: MessageFactory) -> None:
    good = message()
    bad = [good, message(key="k"), message(), good]  # the same id twice
    with pytest.raises(ValueError, match=good.id[:8]):
        broker.enqueue(bad)
    assert broker.inspector.counts() == {}
    assert broker.inspector.job(good.id) is None
    assert broker.claim(None, 10, LEASE) == []
    fresh = message(key="k")
    assert broker.enqueue([fresh]) == [fresh.id], "the failed batch claimed no key"
