"""The memory broker beyond the contract: the in-process mode's ``result_ttl=0``."""

from __future__ import annotations

import math

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
