"""The worker registry: live workers listed, lapsed ones gone, their jobs claimable at once."""

from __future__ import annotations

from typing import Any

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory, claim_ids

from offload._brokers._base import Lease, Registering, WorkerInfo, WorkerListing
from offload._message import Outcome
from offload.testing import FakeClock

LAPSE = 10.0


def _info(clock: FakeClock, name: str, **fields: Any) -> WorkerInfo:
    values: dict[str, Any] = {
        "id": f"host-{name}:1:{name}",
        "host": f"host-{name}",
        "pid": 1,
        "queues": (),
        "pool": "threads",
        "concurrency": 4,
        "started": clock.now(),
        "last_seen": clock.now(),
        "running": (),
    }
    values.update(fields)
    return WorkerInfo(**values)


def _beat(
    broker: ContractBroker, clock: FakeClock, info: WorkerInfo, **changes: Any
) -> float | None:
    assert isinstance(broker, Registering)
    return broker.registry.heartbeat(info._replace(last_seen=clock.now(), **changes), LAPSE)


def _register(broker: ContractBroker, info: WorkerInfo) -> None:
    assert isinstance(broker, Registering)
    broker.registry.register(info, LAPSE)


def _listed(broker: ContractBroker) -> list[WorkerInfo]:
    inspector = broker.inspector
    assert isinstance(inspector, WorkerListing)
    return inspector.workers()


def test_every_broker_keeps_a_registry_and_lists_workers(broker: ContractBroker) -> None:
    assert isinstance(broker, Registering)
    assert isinstance(broker.inspector, WorkerListing)
    assert _listed(broker) == []


def test_registered_workers_are_listed_with_their_fields_oldest_first(
    broker: ContractBroker, clock: FakeClock
) -> None:
    first = _info(clock, "a", queues=("mail", "default"), pool="processes", concurrency=2)
    _register(broker, first)
    clock.advance(1)
    second = _info(clock, "b")
    _register(broker, second)
    assert _listed(broker) == [first, second]


def test_a_heartbeat_refreshes_last_seen_and_running_jobs(
    broker: ContractBroker, clock: FakeClock
) -> None:
    info = _info(clock, "a")
    _register(broker, info)
    clock.advance(3)
    _beat(broker, clock, info, running=("job-1", "job-2"))
    (listed,) = _listed(broker)
    assert listed.last_seen == clock.now()
    assert listed.running == ("job-1", "job-2")
    assert listed.started == info.started


def test_a_worker_whose_heartbeat_lapsed_is_not_listed(
    broker: ContractBroker, clock: FakeClock
) -> None:
    quiet, beating = _info(clock, "quiet"), _info(clock, "beating")
    _register(broker, quiet)
    _register(broker, beating)
    clock.advance(LAPSE / 2)
    _beat(broker, clock, beating)
    clock.advance(LAPSE / 2)
    assert [w.id for w in _listed(broker)] == [beating.id]


def test_unregister_removes_a_worker_at_once(broker: ContractBroker, clock: FakeClock) -> None:
    info = _info(clock, "a")
    _register(broker, info)
    assert isinstance(broker, Registering)
    broker.registry.unregister(info.id)
    assert _listed(broker) == []


def test_a_heartbeat_says_when_the_next_other_worker_lapses(
    broker: ContractBroker, clock: FakeClock
) -> None:
    mine, other = _info(clock, "mine"), _info(clock, "other")
    _register(broker, mine)
    assert _beat(broker, clock, mine) is None  # alone
    _register(broker, other)
    clock.advance(2)
    assert _beat(broker, clock, mine) == pytest.approx(other.last_seen + LAPSE)


def test_the_jobs_of_a_lapsed_worker_are_claimable_before_their_lease_ends(
    make_broker: Any, clock: FakeClock, message: MessageFactory
) -> None:
    broker: ContractBroker = make_broker()
    dead, alive = _info(clock, "dead"), _info(clock, "alive")
    _register(broker, dead)  # this broker object's claims are held by "dead"
    job = message()
    broker.enqueue([job])
    (held,) = broker.claim(None, 10, LEASE)
    lease_end = held.lease_until
    _register(broker, alive)
    clock.advance(LAPSE - 1)
    _beat(broker, clock, alive)
    assert claim_ids(broker) == []  # "dead" has not lapsed yet: its lease holds
    clock.advance(1)
    _beat(broker, clock, alive)  # "dead" lapsed: its running job is released
    assert clock.now() < lease_end  # long before the lease would have ended
    (again,) = broker.claim(None, 10, LEASE)
    assert again.message.id == job.id
    assert again.attempt == 2 and again.token != held.token
    assert [w.id for w in _listed(broker)] == [alive.id]
    # The lapsed worker's late answers are fenced off.
    assert broker.extend(held, LEASE) is Lease.LOST
    assert broker.ack(held, Outcome.success(None)) is False
    assert broker.ack(again, Outcome.success(None)) is True


def test_the_jobs_of_a_live_worker_stay_held(
    broker: ContractBroker, clock: FakeClock, message: MessageFactory
) -> None:
    mine, other = _info(clock, "mine"), _info(clock, "other")
    _register(broker, mine)
    broker.enqueue([message()])
    assert len(broker.claim(None, 10, LEASE)) == 1
    _register(broker, other)
    for _ in range(5):  # both keep beating, far past one lapse
        clock.advance(LAPSE / 2)
        _beat(broker, clock, mine)
        _beat(broker, clock, other)
    assert claim_ids(broker) == []


def test_an_unregistered_worker_leaves_its_jobs_to_their_leases(
    broker: ContractBroker, clock: FakeClock, message: MessageFactory
) -> None:
    leaving, other = _info(clock, "leaving"), _info(clock, "other")
    _register(broker, leaving)
    broker.enqueue([message()])
    assert len(broker.claim(None, 10, LEASE)) == 1
    assert isinstance(broker, Registering)
    broker.registry.unregister(leaving.id)  # a clean exit releases its jobs itself
    _register(broker, other)
    clock.advance(LAPSE + 1)
    _beat(broker, clock, other)
    assert claim_ids(broker) == []
    clock.advance(LEASE)
    assert len(claim_ids(broker)) == 1
