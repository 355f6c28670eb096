"""``offload schedules`` and ``offload scheduler``: an app's periodic schedules.

``offload schedules --app module:app`` lists each schedule with its last
and next fire times (in the schedule's time zone) and the state of the last
tick's job, read from the broker. ``offload scheduler module:app`` runs the
scheduler alone, for deployments whose workers run with ``--no-scheduler``
(any number of schedulers may run: each tick is still enqueued once).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple

import click

from ._brokers import Inspector
from ._brokers._base import Scheduling
from ._brokers._url import redacted
from ._commands import _echo, _inspecting, _table, load_app
from ._periodic import scheduler as periodic_scheduler
from ._schedule import Schedule

if TYPE_CHECKING:
    from ._app import App

log = logging.getLogger(__name__)


def register(group: click.Group) -> None:
    """Add ``schedules`` and ``scheduler`` to ``group`` (the ``offload`` command)."""
    group.add_command(schedules)
    group.add_command(scheduler)


@click.command()
@click.option(
    "--app",
    "target",
    metavar="MODULE:APP",
    required=True,
    help="The app that declares the schedules, as given to `offload worker`.",
)
def schedules(target: str) -> None:
    """List the app's periodic schedules: last and next fire times, the last run's state.

    Times are in each schedule's own time zone. LAST RUN is the state of the
    last tick's job (`skipped` when missed ticks were skipped, `-` before the
    first tick, `pruned` once the job's result TTL passed).
    """
    with _inspecting(target) as (app, inspector):
        if not app.schedules:
            click.echo(f"{target} declares no schedules (app.periodic)")
            return
        rows = [_row(app, inspector, schedule) for schedule in app.schedules.values()]
    _echo(_table(["TASK", "SCHEDULE", "MISSED", "LAST FIRE", "LAST RUN", "NEXT FIRE"], rows))


class ScheduleStatus(NamedTuple):
    """One schedule as ``offload schedules`` and the dashboard show it."""

    schedule: Schedule
    last_fire: float | None
    """The last tick's fire time; ``None`` before the first."""
    job_id: str | None
    """The last tick's job; ``None`` before the first tick or when it was skipped."""
    state: str
    """The last tick's job state, or ``-`` (no tick yet), ``skipped``, ``pruned``."""
    next_fire: float

    def local(self, fire: float | None) -> str:
        """``fire`` in the schedule's time zone, to the second; ``-`` for none."""
        return "-" if fire is None else self.schedule.local(fire).isoformat(timespec="seconds")


def schedule_status(app: App, inspector: Inspector, schedule: Schedule) -> ScheduleStatus:
    """Where ``schedule`` stands: its last tick (read from the broker) and its next."""
    broker = app.broker
    record = broker.schedules.last_fired(schedule.name) if isinstance(broker, Scheduling) else None
    if record is None:
        last, job_id, state = None, None, "-"
    else:
        last, job_id = record.fire, record.job_id or None
        job = inspector.job(job_id) if job_id else None
        state = "skipped" if not job_id else job.state.value if job else "pruned"
    return ScheduleStatus(schedule, last, job_id, state, schedule.next_after(app.clock.now()))


def _row(app: App, inspector: Inspector, schedule: Schedule) -> list[str]:
    status = schedule_status(app, inspector, schedule)
    return [
        schedule.name,
        schedule.describe(),
        str(schedule.missed),
        status.local(status.last_fire),
        status.state,
        status.local(status.next_fire),
    ]


@click.command()
@click.argument("target")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def scheduler(target: str, log_level: str) -> None:
    """Run the periodic schedules of TARGET (module:app) alone, without running tasks.

    Every `offload worker` runs them too unless started with --no-scheduler;
    however many schedulers run, each tick is enqueued once. SIGTERM or
    Ctrl-C stops it.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    app = load_app(target)
    if not app.durable:
        raise click.UsageError(
            f"{target} is an in-process app: its schedules run in the program itself. "
            "Give it a URL (offload.App('sqlite:///jobs.db')) or set OFFLOAD_URL."
        )
    ticks = periodic_scheduler(app)
    if ticks is None:
        raise click.UsageError(f"{target} declares no schedules (app.periodic): nothing to run")
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    ticks.start()
    log.info(
        "offload scheduler %d: broker %s, %d schedule(s)",
        os.getpid(),
        redacted(app.url),
        len(ticks.schedules),
    )
    while not stop.wait(0.5):
        pass
    ticks.stop()
    app.broker.close()
    log.info("offload scheduler %d: stopped", os.getpid())
