"""The Redis broker's ``ACK_CLAIM``: what the contract cannot see of it.

The contract (``test_contract_ack_and_claim.py``) holds ``ack_and_claim`` to
``ack`` then ``claim``. Here: several threads' calls batched into one script
share its claim out in order, a call that cannot be sent fails alone, a
counter that refuses the claim's tokens refuses the ack with it (never a
claim without its ack, nor an ack half-way), and an outage is
``BrokerUnavailable``.

Against the Redis test server (``OFFLOAD_TEST_REDIS_URL``), each test in a
namespace of its own, dropped after.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from helpers import free_port  # noqa: E402
from offload._brokers._redis import RedisBroker  # noqa: E402
from offload._brokers._redis.claims import ClaimPath  # noqa: E402
from offload._errors import BrokerUnavailable  # noqa: E402
from offload._message import Delivery, Message, Outcome, State, new_id  # noqa: E402
from servers import require_redis  # noqa: E402

LEASE = 30.0
DONE = Outcome(State.SUCCEEDED, payload=b"1")


def message() -> Message:
    return Message(new_id(), "tasks.work", (), {}, payload=b"[[],{}]", created=time.time())


@pytest.fixture
def broker() -> Iterator[RedisBroker]:
    made = RedisBroker(require_redis(), namespace=f"test-{uuid.uuid4().hex}")
    yield made
    made.drop()
    made.close()


def running(broker: RedisBroker, count: int) -> list[Delivery]:
    """``count`` jobs enqueued and claimed, in order."""
    broker.enqueue([message() for _ in range(count)])
    claimed = broker.claim(None, count, LEASE)
    assert len(claimed) == count
    return claimed


def path(broker: RedisBroker) -> ClaimPath:
    found = broker._path
    assert isinstance(found, ClaimPath)
    return found


def call(broker: RedisBroker, delivery: Delivery, limit: int, outcome: Outcome = DONE) -> Any:
    """One thread's ``ack_and_claim`` as the batch takes it."""
    values = path(broker)._ack_values(delivery, outcome)
    return (values, ("*",), limit, LEASE)


def test_a_batch_of_calls_shares_one_claim_out_in_order(broker: RedisBroker) -> None:
    finished = running(broker, 3)
    waiting = [message() for _ in range(4)]
    broker.enqueue(waiting)
    answers = path(broker)._ack_claim_together(
        [call(broker, finished[0], 1), call(broker, finished[1], 2), call(broker, finished[2], 2)]
    )
    assert not any(isinstance(answer, BaseException) for answer in answers)
    assert [acked for acked, _ in answers] == [True, True, True]  # type: ignore[misc]
    shares = [[d.message.id for d in got] for _, got in answers]  # type: ignore[misc]
    ids = [m.id for m in waiting]
    assert shares == [ids[:1], ids[1:3], ids[3:]]
    tokens = [d.token for _, got in answers for d in got]  # type: ignore[misc]
    assert len(set(tokens)) == 4
    for done in finished:
        job = broker.inspector.job(done.message.id)
        assert job is not None and (job.state, job.result) == (State.SUCCEEDED, b"1")


def test_a_call_that_cannot_be_sent_fails_alone(broker: RedisBroker) -> None:
    first, second = running(broker, 2)
    waiting = message()
    broker.enqueue([waiting])
    unsendable = Outcome(State.SUCCEEDED, payload=object())  # type: ignore[arg-type]
    bad, good = path(broker)._ack_claim_together(
        [call(broker, first, 1, unsendable), call(broker, second, 1)]
    )
    assert isinstance(bad, TypeError)
    assert not isinstance(good, BaseException)
    assert good[0] is True
    assert [d.message.id for d in good[1]] == [waiting.id]
    job = broker.inspector.job(first.message.id)
    assert job is not None and job.state is State.RUNNING  # its ack never ran: retried as ack


def test_a_counter_that_refuses_the_tokens_refuses_the_ack_too(broker: RedisBroker) -> None:
    (delivery,) = running(broker, 1)
    broker.enqueue([message()])
    client = redis.Redis.from_url(require_redis())
    try:
        client.set(f"{broker.prefix}seq", "not a number")
        with pytest.raises(redis.ResponseError, match="not a count"):
            broker.ack_and_claim(delivery, DONE, None, 1, LEASE)
    finally:
        client.close()
    job = broker.inspector.job(delivery.message.id)
    assert job is not None and job.state is State.RUNNING, "nothing written"
    assert broker.inspector.counts()["default"][State.QUEUED] == 1


def test_an_unreachable_server_is_broker_unavailable() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0", namespace="gone")
    broker.BACKOFF = (0.01, 0.01)
    message_ = message()
    delivery = Delivery(message_, 1, time.time() + LEASE)
    try:
        with pytest.raises(BrokerUnavailable):
            broker.ack_and_claim(delivery, DONE, None, 1, LEASE)
    finally:
        broker.close()
