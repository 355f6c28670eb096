"""Periodic schedules' broker side: keys with a horizon, and the last fire time (compare-and-set).

A tick is enqueued under the key ``periodic:{task}:{fire}`` with a
``key_horizon``: the key then finds its job in any final state, so a late
scheduler can never enqueue a tick that already ran. The last fire time of
each schedule lives in the broker (``ScheduleStore``), advanced
compare-and-set so two schedulers never both advance it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory

from offload._brokers._base import Fired, ScheduleStore, Scheduling
from offload._message import ErrorInfo, Outcome, State
from offload.testing import FakeClock

HORIZON = 3600.0
OUTCOMES = {
    State.SUCCEEDED: Outcome(State.SUCCEEDED, payload=b"null"),
    State.FAILED: Outcome(State.FAILED, error_info=ErrorInfo("E", "boom", "")),
    State.CANCELLED: Outcome(State.CANCELLED),
}


def run_once(broker: ContractBroker, state: State) -> None:
    (delivery,) = broker.claim(None, 1, LEASE)
    assert broker.ack(delivery, OUTCOMES[state])


@pytest.mark.parametrize("state", sorted(OUTCOMES))
def test_a_key_with_a_horizon_finds_its_finished_job_in_any_state(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock, state: State
) -> None:
    tick = message(key="periodic:t:100", key_horizon=HORIZON)
    assert broker.enqueue([tick]) == [tick.id]
    run_once(broker, state)
    clock.advance(HORIZON - 1)
    late = message(key="periodic:t:100", key_horizon=HORIZON)
    assert broker.enqueue([late]) == [tick.id], "a late scheduler must not run the tick again"
    assert broker.inspector.job(late.id) is None
    assert broker.claim(None, 10, LEASE) == []


def test_the_horizon_outlives_a_zero_result_ttl(
    make_broker: Callable[..., ContractBroker], message: MessageFactory, clock: FakeClock
) -> None:
    broker = make_broker(result_ttl=0)
    tick = message(key="periodic:t:1", key_horizon=HORIZON)
    broker.enqueue([tick])
    run_once(broker, State.SUCCEEDED)
    clock.advance(HORIZON / 2)
    broker.inspector.prune()
    assert broker.enqueue([message(key="periodic:t:1", key_horizon=HORIZON)]) == [tick.id]
    info = broker.inspector.job(tick.id)
    assert info is not None and info.state is State.SUCCEEDED


def test_past_the_horizon_the_key_makes_a_new_job(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    tick = message(key="periodic:t:5", key_horizon=60.0)
    broker.enqueue([tick])
    run_once(broker, State.FAILED)
    clock.advance(61)
    again = message(key="periodic:t:5", key_horizon=60.0)
    assert broker.enqueue([again]) == [again.id]


def test_without_a_horizon_a_failed_key_makes_a_new_job(
    broker: ContractBroker, message: MessageFactory
) -> None:
    broker.enqueue([message(key="k")])
    run_once(broker, State.FAILED)
    fresh = message(key="k")
    assert broker.enqueue([fresh]) == [fresh.id]


def test_a_horizon_still_finds_the_live_job(
    broker: ContractBroker, message: MessageFactory
) -> None:
    tick = message(key="periodic:t:9", key_horizon=HORIZON)
    broker.enqueue([tick])
    assert broker.enqueue([message(key="periodic:t:9", key_horizon=HORIZON)]) == [tick.id]
    broker.claim(None, 1, LEASE)
    assert broker.enqueue([message(key="periodic:t:9", key_horizon=HORIZON)]) == [tick.id]


# -- the last fire time ---------------------------------------------------------------


def test_every_broker_stores_fire_times(broker: ContractBroker) -> None:
    assert isinstance(broker, Scheduling)


def test_the_first_record_is_set_once(broker: ContractBroker) -> None:
    assert isinstance(broker, Scheduling)
    store = broker.schedules
    assert store.last_fired("cleanup") is None
    assert store.record_fired("cleanup", None, Fired(1000.0, "job-a"))
    assert not store.record_fired("cleanup", None, Fired(1000.0, "job-b"))
    assert store.last_fired("cleanup") == Fired(1000.0, "job-a")
    assert store.last_fired("other") is None


def test_the_record_advances_only_from_the_value_read(broker: ContractBroker) -> None:
    assert isinstance(broker, Scheduling)
    store = broker.schedules
    store.record_fired("s", None, Fired(1700000000.25, "a"))
    assert store.record_fired("s", 1700000000.25, Fired(1700000300.25, "b"))
    assert not store.record_fired("s", 1700000000.25, Fired(1700000300.25, "c")), "stale read"
    assert not store.record_fired("s", None, Fired(1.0, "d"))
    assert store.last_fired("s") == Fired(1700000300.25, "b")


def test_concurrent_schedulers_advance_it_once(broker: ContractBroker) -> None:
    assert isinstance(broker, Scheduling)
    store = broker.schedules
    store.record_fired("race", None, Fired(10.0, "first"))
    wins: list[str] = []
    start = threading.Barrier(6)

    def scheduler(name: str) -> None:
        start.wait()
        if store.record_fired("race", 10.0, Fired(20.0, name)):
            wins.append(name)

    threads = [threading.Thread(target=scheduler, args=(f"s{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(wins) == 1
    assert store.last_fired("race") == Fired(20.0, wins[0])


# -- schedulers on every broker, one pass at a time ----------------------------------------


class ReadTogether:
    """A schedule store whose reads all return what was there when ``snapshot()`` ran:
    schedulers that read at the same moment, then write one after another."""

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store
        self.seen: dict[str, Fired | None] = {}

    def snapshot(self, name: str) -> None:
        self.seen[name] = self.store.last_fired(name)

    def last_fired(self, schedule: str) -> Fired | None:
        return self.seen[schedule]

    def record_fired(self, schedule: str, previous: float | None, fired: Fired) -> bool:
        return self.store.record_fired(schedule, previous, fired)


def test_three_schedulers_reading_at_once_enqueue_each_tick_once(
    make_broker: Callable[..., ContractBroker], message: MessageFactory, clock: FakeClock
) -> None:
    """Three schedulers read the record at the same moment for each of 20 one-second
    ticks, then enqueue one after another; a worker finishes each tick at once, so
    the later two meet a finished job (result_ttl=0: only the key horizon keeps it)."""
    from offload._schedule import Schedule
    from offload._scheduler import TICK_HORIZON, Scheduler

    broker = make_broker(result_ttl=0)
    assert isinstance(broker, Scheduling)
    created: list[str] = []
    found: list[str] = []

    def send(schedule: Schedule, fire: float) -> str:
        tick = message(schedule.task, key=schedule.key(fire), key_horizon=TICK_HORIZON)
        (job_id,) = broker.enqueue([tick])
        (created if job_id == tick.id else found).append(schedule.key(fire))
        for delivery in broker.claim(None, 10, LEASE):  # a worker runs it at once
            broker.ack(delivery, OUTCOMES[State.SUCCEEDED])
        return job_id

    schedule = Schedule("tasks.beat", every=1.0, missed="all")
    store = ReadTogether(broker.schedules)
    schedulers = [Scheduler(store, {"tasks.beat": schedule}, send, clock=clock) for _ in range(3)]
    for _ in range(20):
        clock.advance(1.0)
        store.snapshot("tasks.beat")
        for scheduler in schedulers:
            scheduler.run_due()
    assert len(created) == len(set(created)) == 20, "each tick enqueued once"
    assert sorted(found) == sorted(created * 2), "the two late enqueues found the finished job"
    record = broker.schedules.last_fired("tasks.beat")
    assert record is not None and schedule.key(record.fire) == created[-1]
