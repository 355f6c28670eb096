"""The scheduler: enqueues the ticks of an app's periodic schedules, once each.

It runs as a thread in every worker (``offload worker``, the embedded
worker) and alone (``offload scheduler``). Any number of them may run, on
any number of hosts; none keeps state of its own. For each schedule, each
pass:

1. reads the last fire time from the broker (``ScheduleStore``);
2. asks the schedule which ticks are due after it (``Schedule.plan``:
   on-time ticks, and missed ones as the missed-run policy says);
3. enqueues each under the key ``periodic:{task}:{fire}`` with a key
   horizon (``TICK_HORIZON``): another scheduler's enqueue of the same tick
   finds that job, queued, running or finished, and stores nothing;
4. advances the record compare-and-set from the value it read. If another
   scheduler moved it first, this one stops there and reads again.

So a tick runs once whichever schedulers saw it, provided no scheduler stalls
for longer than ``TICK_HORIZON`` between reading the record and enqueueing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from ._brokers._base import Fired, ScheduleStore
from ._clock import SYSTEM_CLOCK, Clock
from ._schedule import Schedule

log = logging.getLogger(__name__)

TICK_HORIZON = 3600.0
"""Seconds a finished tick's key keeps finding its job (and the broker keeps the job).

A pass that finds itself older than half of it (the process was suspended)
stops before enqueueing and reads the record again."""

Send = Callable[[Schedule, float], str]
"""Enqueue the tick of a schedule at a fire time (with its key); the job id."""


class Scheduler:
    """Enqueues the due ticks of ``schedules``; ``run_due()`` is one pass.

    ``start()`` runs passes on a thread until ``stop()``, waking at the next
    fire time (at least every ``MAX_SLEEP`` seconds, and ``RETRY`` seconds
    after a failed pass). Tests call ``run_due()`` with a fake clock instead.
    """

    MAX_SLEEP = 30.0
    RETRY = 1.0

    def __init__(
        self,
        store: ScheduleStore,
        schedules: Mapping[str, Schedule],
        send: Send,
        *,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "offload",
    ) -> None:
        self._store = store
        self._schedules = schedules  # read at each pass: schedules declared later join
        self._send = send
        self._clock = clock
        self._name = name
        self._started = clock.now()
        """Without a record yet, ticks count from here: nothing before was ever due."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()  # schedules whose last pass failed

    @property
    def schedules(self) -> list[Schedule]:
        return list(self._schedules.values())

    def start(self) -> None:
        if self._thread is not None:
            return
        self._started = self._clock.now()
        self._thread = threading.Thread(
            target=self._loop, name=f"{self._name}-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def run_due(self) -> float:
        """Enqueue every tick due now, for every schedule; when the next one falls.

        A schedule whose pass fails (the broker is down) is logged and left
        for the next pass; the others go on.
        """
        now = self._clock.now()
        wake = now + self.MAX_SLEEP
        for schedule in self.schedules:
            try:
                self._fire_due(schedule, now)
            except Exception:  # noqa: BLE001 - logged; the scheduler carries on
                self._failed(schedule.name)
                wake = min(wake, now + self.RETRY)
                continue
            if schedule.name in self._failing:
                self._failing.discard(schedule.name)
                log.info("offload scheduler: schedule %s works again", schedule.name)
            wake = min(wake, schedule.next_after(now))
        return wake

    def _failed(self, name: str) -> None:
        """Log a failed pass: with its traceback once per outage, then quietly at each retry."""
        first = name not in self._failing
        self._failing.add(name)
        log.log(
            logging.ERROR if first else logging.DEBUG,
            "offload scheduler: schedule %s failed; retrying every %gs",
            name,
            self.RETRY,
            exc_info=True,
        )

    def _fire_due(self, schedule: Schedule, now: float) -> None:
        record = self._store.last_fired(schedule.name)
        previous = None if record is None else record.fire
        plan = schedule.plan(self._started if previous is None else previous, now)
        if plan.skipped:
            log.warning(
                "offload scheduler: %s missed ticks up to %s (missed=%r)",
                schedule.name,
                schedule.local(plan.latest or now).isoformat(),
                schedule.missed,
            )
        for fire in plan.run:
            if self._clock.now() - now > TICK_HORIZON / 2:
                return  # this pass stalled: what it read may be stale
            job_id = self._send(schedule, fire)
            if not self._store.record_fired(schedule.name, previous, Fired(fire, job_id)):
                return  # another scheduler advanced it: read again next pass
            log.info(
                "offload scheduler: %s tick %s enqueued as job %s",
                schedule.name,
                schedule.local(fire).isoformat(),
                job_id,
            )
            previous = fire
        if plan.latest is not None and plan.latest != previous:
            # Only skipped ticks were due: record them as decided (no job).
            self._store.record_fired(schedule.name, previous, Fired(plan.latest, ""))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wake = self.run_due()
            except Exception:
                log.exception("offload scheduler: a pass failed")
                wake = self._clock.now() + self.RETRY
            # Wait until the tick, re-checking the (possibly fake) time.
            while not self._stop.is_set():
                remaining = wake - self._clock.now()
                if remaining <= 0:
                    break
                self._clock.wait(self._stop, min(remaining, self.MAX_SLEEP))
