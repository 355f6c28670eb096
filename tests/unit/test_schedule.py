"""Schedules on a fake clock: cron, intervals, daylight-saving days, missed-run policies.

``Schedule`` is pure (fire times, plans); ``Scheduler.run_due()`` is one
pass of a scheduler, run here by hand on a fake clock and the memory broker:
no thread, no sleep.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import offload
from offload._brokers import MemoryBroker
from offload._brokers._base import Fired
from offload._schedule import Schedule
from offload._scheduler import Scheduler
from offload.testing import FakeClock


def at(text: str, tz: str = "UTC") -> float:
    """Epoch seconds of a wall-clock time in ``tz`` (``"2026-03-29 02:30"``)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def walls(schedule: Schedule, fires: list[float]) -> list[str]:
    return [schedule.local(fire).strftime("%Y-%m-%d %H:%M %Z") for fire in fires]


def fires_between(schedule: Schedule, start: float, end: float) -> list[float]:
    fires, moment = [], start
    while (moment := schedule.next_after(moment)) <= end:
        fires.append(moment)
    return fires


# -- when ticks fall --------------------------------------------------------------------


def test_cron_every_five_minutes() -> None:
    schedule = Schedule("t", cron="*/5 * * * *")
    start = at("2026-01-01 10:02")
    assert walls(schedule, fires_between(schedule, start, start + 900)) == [
        "2026-01-01 10:05 UTC",
        "2026-01-01 10:10 UTC",
        "2026-01-01 10:15 UTC",
    ]
    assert schedule.next_after(at("2026-01-01 10:05")) == at("2026-01-01 10:10"), "strictly after"


def test_cron_in_a_time_zone() -> None:
    schedule = Schedule("t", cron="0 9 * * 1-5", tz="America/New_York")  # weekdays 9:00
    fires = fires_between(schedule, at("2026-01-02 00:00", "America/New_York"), at("2026-01-06"))
    assert walls(schedule, fires) == ["2026-01-02 09:00 EST", "2026-01-05 09:00 EST"]
    assert fires[0] == at("2026-01-02 14:00")  # UTC


def test_intervals_fall_on_multiples_of_the_interval() -> None:
    schedule = Schedule("t", every=30.0)
    assert schedule.next_after(1_000_000_001.0) == 1_000_000_020.0
    assert schedule.next_after(1_000_000_020.0) == 1_000_000_050.0
    assert Schedule("t", every=timedelta(minutes=1).total_seconds()).next_after(59.5) == 60.0


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        # Spring forward: 02:30 does not exist that night; cron runs it right after the gap.
        ("Europe/Paris", "2026-03-29", ["2026-03-28 02:30 CET", "2026-03-29 03:00 CEST"]),
        ("America/New_York", "2026-03-08", ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT"]),
        # Fall back: 02:30 happens twice (Paris) or 01:00-02:00 repeats (New York): once each.
        ("Europe/Paris", "2026-10-25", ["2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST"]),
        ("America/New_York", "2026-11-01", ["2026-10-31 02:30 EDT", "2026-11-01 02:30 EST"]),
    ],
)
def test_a_daily_0230_schedule_on_daylight_saving_days(
    tz: str, day: str, expected: list[str]
) -> None:
    schedule = Schedule("t", cron="30 2 * * *", tz=tz)
    start = at(f"{day} 00:00", tz) - 86400
    fires = fires_between(schedule, start, start + 3 * 86400)
    assert walls(schedule, fires)[:2] == expected
    assert len(fires) == 3, "one run a day, never two, never none"
    gaps = [b - a for a, b in itertools.pairwise(fires)]
    assert all(82800 <= gap <= 90000 for gap in gaps)


def test_fall_back_in_paris_runs_the_0230_tick_once_even_from_inside_the_repeat() -> None:
    schedule = Schedule("t", cron="30 2 * * *", tz="Europe/Paris")
    first = at("2026-10-25 02:30", "Europe/Paris")  # the first 02:30 (CEST)
    # An hour later the wall clock reads 02:30 again (CET): no second run that day.
    assert walls(schedule, [schedule.next_after(first + 3600)]) == ["2026-10-26 02:30 CET"]


def test_every_half_hour_keeps_running_through_the_repeated_hour() -> None:
    schedule = Schedule("t", cron="*/30 * * * *", tz="Europe/Paris")
    start = at("2026-10-25 01:45", "Europe/Paris")
    fires = fires_between(schedule, start, start + 3 * 3600)
    assert [b - a for a, b in itertools.pairwise(fires)] == [1800.0] * (len(fires) - 1)


def test_the_same_plan_backwards_across_daylight_saving() -> None:
    schedule = Schedule("t", cron="30 2 * * *", tz="America/New_York")
    end = at("2026-03-10 00:00", "America/New_York")
    latest = schedule.latest(end - 4 * 86400, end, limit=10)
    assert latest == fires_between(schedule, end - 4 * 86400, end)


def test_bad_declarations_are_refused_with_what_to_do() -> None:
    with pytest.raises(offload.ConfigurationError, match="exactly one of cron"):
        Schedule("t")
    with pytest.raises(offload.ConfigurationError, match="exactly one of cron"):
        Schedule("t", cron="* * * * *", every=5.0)
    with pytest.raises(offload.ConfigurationError, match="not a cron expression"):
        Schedule("t", cron="every monday")
    with pytest.raises(offload.ConfigurationError, match="IANA"):
        Schedule("t", cron="* * * * *", tz="Paris/France")
    with pytest.raises(offload.ConfigurationError, match="'skip', 'once' or 'all'"):
        Schedule("t", every=5.0, missed="sometimes")  # type: ignore[arg-type]
    with pytest.raises(offload.ConfigurationError, match="max_catch_up"):
        Schedule("t", every=5.0, max_catch_up=0)
    with pytest.raises(offload.ConfigurationError, match="every=-1"):
        Schedule("t", every=-1.0)


# -- missed runs ------------------------------------------------------------------------


def test_an_on_time_tick_runs_whatever_the_policy() -> None:
    for missed in offload.Missed:
        schedule = Schedule("t", every=60.0, missed=missed)
        plan = schedule.plan(after=600.0, now=660.5)
        assert plan.run == [660.0] and plan.latest == 660.0 and plan.skipped == 0


def test_skip_runs_none_of_the_missed_ticks() -> None:
    schedule = Schedule("t", every=300.0)  # missed="skip" by default; a grace of 60 s
    plan = schedule.plan(after=600.0, now=3600.0 + 30)  # ticks 900 ... 3600
    assert plan.run == [3600.0], "only the tick still within its grace"
    plan = schedule.plan(after=600.0, now=3600.0 + 61)
    assert plan.run == [] and plan.latest == 3600.0 and plan.skipped


def test_once_runs_one_catch_up() -> None:
    schedule = Schedule("t", every=300.0, missed="once")
    plan = schedule.plan(after=600.0, now=3600.0 + 61)
    assert plan.run == [3600.0] and plan.latest == 3600.0


def test_all_runs_every_missed_tick_up_to_max_catch_up() -> None:
    schedule = Schedule("t", every=300.0, missed=offload.Missed.ALL, max_catch_up=3)
    assert schedule.plan(after=600.0, now=1500.0 + 61).run == [900.0, 1200.0, 1500.0]
    plan = schedule.plan(after=600.0, now=3600.0 + 61)
    assert plan.run == [3000.0, 3300.0, 3600.0], "the latest max_catch_up"
    assert plan.skipped


def test_an_interval_within_its_grace_always_has_a_tick_on_time() -> None:
    schedule = Schedule("t", every=1.0)  # grace: 2 s
    assert schedule.plan(after=0.0, now=1000.5).run == [999.0, 1000.0]


def test_a_gap_of_years_costs_no_more_than_a_short_one() -> None:
    schedule = Schedule("t", every=1.0, missed="all", max_catch_up=5)
    plan = schedule.plan(after=0.0, now=1_700_000_000.0)
    assert plan.run == [1_699_999_994.0 + i for i in range(5)] + [1_699_999_999.0, 1_700_000_000.0]


# -- the scheduler, one pass at a time ----------------------------------------------------


class Sent:
    """A scheduler's ``send``: enqueues ticks as a durable app would (key and horizon)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.ticks: list[tuple[str, float]] = []

    def __call__(self, schedule: Schedule, fire: float) -> str:
        message = offload.Message(f"job-{len(self.ticks)}", schedule.task, (), {})
        message.key, message.key_horizon = schedule.key(fire), 3600.0
        (job_id,) = self.broker.enqueue([message])
        if job_id == message.id:
            self.ticks.append((schedule.task, fire))
        return job_id


def schedulers(
    clock: FakeClock, n: int, *schedules: Schedule
) -> tuple[MemoryBroker, Sent, list[Scheduler]]:
    broker = MemoryBroker(clock)
    sent = Sent(broker)
    table = {schedule.name: schedule for schedule in schedules}
    made = [Scheduler(broker.schedules, table, sent, clock=clock) for _ in range(n)]
    return broker, sent, made


def test_three_schedulers_enqueue_each_tick_once() -> None:
    clock = FakeClock(start=at("2026-01-01 00:00:00.500000"))  # 3.10 reads 6 digits only
    broker, sent, many = schedulers(clock, 3, Schedule("t", every=1.0))
    for _ in range(20):
        clock.advance(1.0)
        for scheduler in many:
            scheduler.run_due()
        for delivery in broker.claim(None, 10, 30):  # a worker runs each, at once
            broker.ack(delivery, offload.Outcome(offload.State.SUCCEEDED))
    fires = [fire for _, fire in sent.ticks]
    assert fires == [at("2026-01-01 00:00:01") + i for i in range(20)]
    assert broker.schedules.last_fired("t") == Fired(fires[-1], "job-19")


def test_a_late_scheduler_never_enqueues_a_tick_that_already_ran() -> None:
    clock = FakeClock(start=1000.5)
    broker, sent, (early, late) = schedulers(clock, 2, Schedule("t", every=60.0, missed="all"))
    clock.advance(60)  # 1060.5: tick 1020 is due
    early_read = broker.schedules.last_fired("t")
    early.run_due()
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, offload.Outcome(offload.State.FAILED))
    # The late one read nothing (before the early one wrote), then enqueues the same tick.
    assert early_read is None
    job = sent(Schedule("t", every=60.0), 1020.0)
    assert job == delivery.message.id, "the finished tick's key found its job"
    late.run_due()
    assert sent.ticks == [("t", 1020.0)]


def test_the_first_pass_counts_ticks_from_when_the_scheduler_started() -> None:
    clock = FakeClock(start=1000.5)
    _, sent, (scheduler,) = schedulers(clock, 1, Schedule("t", every=1.0, missed="all"))
    scheduler.run_due()
    assert sent.ticks == [], "no tick came since it started"
    clock.advance(1)
    scheduler.run_due()
    assert sent.ticks == [("t", 1001.0)]


@pytest.mark.parametrize(
    ("missed", "expected"),
    [
        ("skip", []),
        ("once", ["03:05"]),
        ("all", ["02:50", "02:55", "03:00", "03:05"]),
    ],
)
def test_after_every_scheduler_was_down(missed: str, expected: list[str]) -> None:
    clock = FakeClock(start=at("2026-01-01 00:00:30"))
    schedule = Schedule("t", cron="*/5 * * * *", missed=missed, max_catch_up=4)  # type: ignore[arg-type]
    broker, sent, (first,) = schedulers(clock, 1, schedule)
    clock.advance(270)  # 00:05:00
    first.run_due()
    assert sent.ticks == [("t", at("2026-01-01 00:05"))]
    sent.ticks.clear()
    clock.advance(3 * 3600 + 90)  # down until 03:06:30: 35 ticks missed
    second = Scheduler(broker.schedules, {"t": schedule}, sent, clock=clock)  # a new one
    second.run_due()
    assert [fire for _, fire in sent.ticks] == [at(f"2026-01-01 {hm}") for hm in expected]
    record = broker.schedules.last_fired("t")
    assert record is not None and record.fire == at("2026-01-01 03:05"), "decided up to now"
    sent.ticks.clear()
    clock.advance(210)  # 03:10:00: back to normal
    second.run_due()
    assert [fire for _, fire in sent.ticks] == [at("2026-01-01 03:10")]


class Flaky:
    """A schedule store that is down for its first ``down`` reads."""

    def __init__(self, store: object, down: int) -> None:
        self.store, self.down = store, down

    def last_fired(self, schedule: str) -> Fired | None:
        if self.down:
            self.down -= 1
            raise offload.BrokerUnavailable("the broker is down")
        return self.store.last_fired(schedule)  # type: ignore[attr-defined, no-any-return]

    def record_fired(self, schedule: str, previous: float | None, fired: Fired) -> bool:
        return self.store.record_fired(schedule, previous, fired)  # type: ignore[attr-defined, no-any-return]


def test_a_broker_outage_is_logged_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(start=1000.5)
    broker = MemoryBroker(clock)
    sent = Sent(broker)
    schedule = Schedule("t", every=10.0)
    scheduler = Scheduler(Flaky(broker.schedules, 3), {"t": schedule}, sent, clock=clock)
    clock.advance(10)  # 1010.5: tick 1010 due
    for _ in range(3):
        assert scheduler.run_due() == clock.now() + Scheduler.RETRY
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "schedule t failed" in errors[0].getMessage()
    assert sent.ticks == []
    assert scheduler.run_due() == 1020.0, "works again: wakes at the next tick"
    assert sent.ticks == [("t", 1010.0)], "the tick is still within its grace"
