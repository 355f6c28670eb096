"""The Redis claim and ack scripts write their indexes once per call, not once per job.

A claim of several jobs leases them all with one ``ZADD running`` and moves
them between state indexes with one ``ZREM`` and one ``ZADD`` per queue; a
batch of acks likewise, and steps the minute's finished counts once per
field. Each test here holds the batched writes to what the job-by-job ones
did: one job listed twice in a ready set is leased once, a job missing
from its state index still ends up listed once, the counts add up, and a
lease's score in ``running`` (a whole second, see ``lease_score`` in
``lua/prelude.lua``) lapses no earlier than the lease, beside scores that
an earlier version wrote exactly.

Against the Redis test server (``OFFLOAD_TEST_REDIS_URL``), each test in a
namespace of its own, dropped after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from offload._brokers._redis import RedisBroker  # noqa: E402
from offload._message import Message, Outcome, State, new_id  # noqa: E402
from offload.testing import FakeClock  # noqa: E402


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[[],{}]")
    fields.setdefault("created", time.time())
    return Message(new_id(), "tasks.work", (), {}, **fields)


def counts(broker: RedisBroker) -> dict[State, int]:
    return {state: n for state, n in broker.inspector.counts().get("default", {}).items() if n}


def test_a_job_listed_twice_in_its_ready_set_is_leased_once_per_claim(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    """Its second member is stale once the first is leased, within the same call."""
    broker = make_broker()
    job = message()
    broker.enqueue([job])
    ready = f"{broker.prefix}ready:default"
    (member,) = raw.zrange(ready, 0, -1)
    raw.zadd(ready, {b"9" * 29 + job.id.encode(): 0})  # a second member, after the first
    assert member != b"9" * 29 + job.id.encode()
    deliveries = broker.claim(None, 5, 30)
    assert [d.message.id for d in deliveries] == [job.id]
    assert raw.zcard(f"{broker.prefix}running") == 1
    assert counts(broker) == {State.RUNNING: 1}
    assert broker.ack(deliveries[0], Outcome.success(1))
    assert counts(broker) == {State.SUCCEEDED: 1}


def test_a_job_missing_from_its_state_index_is_listed_once_after_a_batch(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    sent = [message() for _ in range(4)]
    broker.enqueue(sent)
    raw.zrem(f"{broker.prefix}st:queued:default", sent[1].id)
    raw.zadd(f"{broker.prefix}st:failed:default", {sent[2].id: 1})  # listed twice: stale
    deliveries = broker.claim(None, 4, 30)
    assert sorted(d.message.id for d in deliveries) == sorted(m.id for m in sent)
    assert counts(broker) == {State.RUNNING: 4}
    raw.zrem(f"{broker.prefix}st:running:default", sent[3].id)
    args: list[Any] = [broker.prefix]
    for delivery in deliveries:
        args += broker._path._ack_values(delivery, Outcome.success(1))
    assert broker._lua.ack(args=args) == [1] * 4  # one ACK call for the four
    assert counts(broker) == {State.SUCCEEDED: 4}
    assert raw.zcard(f"{broker.prefix}running") == 0
    assert raw.zcard(f"{broker.prefix}expiry") == 4


def test_a_batch_of_acks_steps_each_minute_count_once_per_job(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    broker = make_broker(clock=clock)
    broker.enqueue([message() for _ in range(5)])
    deliveries = broker.claim(None, 5, 30)
    outcomes = [Outcome.success(1)] * 3 + [Outcome(State.FAILED, None)] * 2
    args: list[Any] = [broker.prefix]
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        args += broker._path._ack_values(delivery, outcome)
    assert broker._lua.ack(args=args) == [1] * 5  # one ACK call for the five
    stats = f"{broker.prefix}stats:{int(clock.now()) // 60 * 60}"
    assert raw.hgetall(stats) == {b"succeeded:default": b"3", b"failed:default": b"2"}
    assert raw.ttl(stats) > 0
    assert counts(broker) == {State.SUCCEEDED: 3, State.FAILED: 2}


def test_a_lease_lapses_at_its_whole_second_and_never_before_its_end(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    clock = FakeClock(start=1_800_000_000.25)
    broker = make_broker(clock=clock)
    job = message()
    broker.enqueue([job])
    (first,) = broker.claim(None, 1, 10.0)
    assert raw.zscore(f"{broker.prefix}running", job.id) == 1_800_000_011.0
    assert raw.hget(f"{broker.prefix}job:{job.id}", "lu") == repr(first.lease_until).encode()
    clock.advance(10.5)  # past its end, not yet past the whole second
    assert broker.claim(None, 1, 10.0) == []
    clock.advance(0.25)
    (again,) = broker.claim(None, 1, 10.0)
    assert again.message.id == job.id
    assert again.token != first.token


def test_an_exact_lease_score_written_by_an_earlier_version_still_lapses_on_time(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    broker = make_broker(clock=clock)
    jobs = [message(), message()]
    broker.enqueue(jobs)
    claimed = broker.claim(None, 2, 10.0)
    old = claimed[0].message.id
    raw.zadd(f"{broker.prefix}running", {old: 1_800_000_003.5})  # as the earlier version wrote
    clock.advance(3.5)
    (again,) = broker.claim(None, 1, 10.0)
    assert again.message.id == old
    assert broker.ack(claimed[1], Outcome.success(1))
    assert not broker.ack(claimed[0], Outcome.success(1))  # its lease went to the new claim
    assert broker.ack(again, Outcome.success(1))
    assert counts(broker) == {State.SUCCEEDED: 2}


def test_an_extended_lease_is_scored_at_its_whole_second(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    broker = make_broker(clock=clock)
    job = message()
    broker.enqueue([job])
    (delivery,) = broker.claim(None, 1, 10.0)
    clock.advance(1.5)
    broker.extend(delivery, 10.0)
    assert raw.zscore(f"{broker.prefix}running", job.id) == 1_800_000_012.0
