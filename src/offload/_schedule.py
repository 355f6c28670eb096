"""A periodic schedule: when its ticks fall, and which ticks run after a gap.

Cron expressions are read by ``cronsim`` (the five fields of cron, with its
day-of-month/day-of-week rule and its daylight-saving rule: a time that a
spring-forward skips runs at the first minute after the gap; a time that a
fall-back repeats runs once, at its first occurrence). Intervals
(``every=``) fall on multiples of the interval since the Unix epoch, so that
every scheduler on every host computes the same fire times without talking
to the others.

Which ticks run is a pure function of the last recorded fire time and now
(``Schedule.plan``): the scheduler thread, the fake-clock tests and
``offload schedules`` all ask it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ._errors import ConfigurationError


class Missed(str, enum.Enum):
    """What a schedule does with ticks missed while no scheduler ran (``missed=``).

    - ``"skip"`` (the default): nothing; the next run is the next tick to come.
    - ``"once"``: one catch-up run (the latest missed tick), then the next tick.
    - ``"all"``: every missed tick, oldest first, at most ``max_catch_up``
      (the latest ones).

    ``app.periodic`` takes the member or its string.
    """

    SKIP = "skip"
    ONCE = "once"
    ALL = "all"

    def __str__(self) -> str:
        return self.value


MissedPolicy = Missed | Literal["skip", "once", "all"]

CRON_GRACE = 60.0
"""Seconds after its fire time during which a cron tick is on time, not missed."""
MIN_GRACE = 2.0
MAX_GRACE = 60.0
"""An interval's grace is the interval itself, kept between these (seconds)."""


class Plan(NamedTuple):
    """What a scheduler does for one schedule now."""

    run: list[float]
    """Fire times to enqueue, oldest first."""
    latest: float | None
    """The latest tick due (run or skipped): the record advances to it. None: nothing due."""
    skipped: int
    """Missed ticks left out (at most the number counted: see ``Schedule.plan``)."""


@dataclass(frozen=True, eq=False)
class Schedule:
    """One periodic schedule of a task (``app.periodic``)."""

    task: str
    """The task's name; also the schedule's name (its record and tick keys)."""
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    missed: MissedPolicy = Missed.SKIP
    max_catch_up: int = 10
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    retries: int | None = None
    timeout: float | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise ConfigurationError(f"app.periodic for {self.task}: {problem}")
        object.__setattr__(self, "_zone", ZoneInfo(self.tz))
        object.__setattr__(self, "missed", Missed(self.missed))

    @property
    def name(self) -> str:
        return self.task

    @property
    def grace(self) -> float:
        """Seconds after a tick's fire time during which running it is on time."""
        if self.every is None:
            return CRON_GRACE
        return min(MAX_GRACE, max(MIN_GRACE, self.every))

    def describe(self) -> str:
        """``cron '*/5 * * * *' (Europe/Paris)`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.tz})"
        return f"every {self.every:g}s"

    def key(self, fire: float) -> str:
        """The idempotency key of the tick at ``fire``: ``periodic:{task}:{fire time, UTC}``."""
        return f"periodic:{self.task}:{datetime.fromtimestamp(fire, timezone.utc).isoformat()}"

    def local(self, fire: float) -> datetime:
        """A fire time in the schedule's time zone."""
        return datetime.fromtimestamp(fire, self._zone)

    def next_after(self, moment: float) -> float:
        """The first fire time strictly after ``moment`` (epoch seconds)."""
        if self.every is not None:
            return (math.floor(moment / self.every) + 1) * self.every
        start = datetime.fromtimestamp(math.floor(moment), self._zone)
        return next(CronSim(self._cron, start)).timestamp()

    def latest(self, after: float, until: float, limit: int) -> list[float]:
        """Up to ``limit`` of the latest fire times in (``after``, ``until``], oldest first."""
        found: list[float] = []
        for fire in self._backwards(until):
            if fire <= after or len(found) >= limit:
                break
            found.append(fire)
        found.reverse()
        return found

    def plan(self, after: float, now: float) -> Plan:
        """Which ticks in (``after``, ``now``] to run, under the missed-run policy.

        A tick within ``grace`` seconds of now is on time and runs. Older
        ones were missed (every scheduler was down, or late): ``skip`` runs
        none of them, ``once`` the latest, ``all`` the latest
        ``max_catch_up``. Only a bounded number of missed ticks is looked
        at, so a year-long gap costs no more than a short one.
        """
        boundary = max(after, now - self.grace)
        on_time = self.latest(boundary, now, limit=1_000)
        keep = {Missed.SKIP: 0, Missed.ONCE: 1, Missed.ALL: self.max_catch_up}[Missed(self.missed)]
        missed = self.latest(after, boundary, limit=keep + 1)
        caught_up = missed[-keep:] if keep else []
        run = caught_up + on_time
        due = run or missed[-1:]
        skipped = len(missed) - len(caught_up)
        return Plan(run, due[-1] if due else None, skipped)

    @property
    def _cron(self) -> str:
        assert self.cron is not None
        return self.cron

    def _backwards(self, until: float) -> Iterator[float]:
        """Fire times at or before ``until``, latest first."""
        if self.every is not None:
            fire = math.floor(until / self.every) * self.every
            while True:
                yield fire
                fire -= self.every
        # cronsim's reverse walk excludes its start: start just past ``until``
        # on a whole second (cron ticks fall on whole minutes).
        start = datetime.fromtimestamp(math.floor(until) + 1, self._zone)
        for moment in CronSim(self._cron, start, reverse=True):
            yield moment.timestamp()


def interval(every: float | timedelta) -> float:
    """``every=`` as seconds."""
    return every.total_seconds() if isinstance(every, timedelta) else every


def _problem(schedule: Schedule) -> str | None:
    """Why ``schedule`` cannot run (None if it can)."""
    return _timing_problem(schedule) or _policy_problem(schedule)


def _timing_problem(schedule: Schedule) -> str | None:
    if (schedule.cron is None) == (schedule.every is None):
        return "give exactly one of cron='*/5 * * * *' or every=seconds (or a timedelta)"
    if schedule.every is not None and (
        isinstance(schedule.every, bool)
        or not isinstance(schedule.every, (int, float))
        or not 0.001 <= schedule.every <= 366 * 86400.0
    ):
        return f"every={schedule.every!r}: give seconds between 0.001 and a year (or a timedelta)"
    if schedule.cron is not None:
        try:
            CronSim(schedule.cron, datetime.now(timezone.utc))
        except (CronSimError, TypeError) as error:
            return f"cron={schedule.cron!r} is not a cron expression ({error})"
    try:
        ZoneInfo(schedule.tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return f"tz={schedule.tz!r} is not an IANA time zone name (e.g. 'Europe/Paris', 'UTC')"
    return None


def _policy_problem(schedule: Schedule) -> str | None:
    if schedule.missed not in {policy.value for policy in Missed}:
        return f"missed={schedule.missed!r}: choose 'skip', 'once' or 'all'"
    if type(schedule.max_catch_up) is not int or not 1 <= schedule.max_catch_up <= 10_000:
        return f"max_catch_up={schedule.max_catch_up!r}: give a whole number from 1 to 10000"
    return None
