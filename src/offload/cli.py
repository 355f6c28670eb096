"""The ``offload`` command."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import click

from . import __version__, _logformat
from ._broker_wait import reach_broker
from ._commands import load_app as _load_app
from ._commands import register
from ._commands_dashboard import dashboard as _dashboard
from ._commands_metrics import serve_metrics
from ._commands_schedules import register as register_schedules
from ._commands_workers import workers
from ._serving import serve

if TYPE_CHECKING:  # the command imports them at run time, through the app it loads
    pass

log = logging.getLogger(__name__)


@click.group()
@click.version_option(__version__, prog_name="offload")
def main() -> None:
    """offload: run Python functions in the background."""


register(main)  # status, jobs, show, retry, cancel, purge
register_schedules(main)  # schedules, scheduler
main.add_command(workers)  # offload workers: the live workers (_commands_workers)
main.add_command(_dashboard)


@main.command()
@click.argument("target")
@click.option(
    "--pool",
    type=click.Choice(["thread", "process", "async"]),
    default="thread",
    show_default=True,
    help="Where tasks that chose no pool run.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    help="Size of that pool (default: 32 threads, or the app's; one process per CPU).",
)
@click.option("-q", "--queues", default=None, help="Comma-separated; earlier ones first.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running tasks get to finish after SIGTERM/SIGINT.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds a claim lasts without renewal (renewed every third of it).",
)
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="Do not send the app's periodic ticks from this worker (see `offload scheduler`).",
)
@click.option(
    "--metrics-port",
    metavar="[HOST:]PORT",
    help="Serve Prometheus metrics there (127.0.0.1 unless a host is given); "
    "the app needs offload.contrib.metrics.Metrics() in its middleware.",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="INFO: a line per finished job; WARNING: retries and failures only.",
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="json: one JSON object per line, with the job's fields.",
)
@click.option(
    "--wait-for-broker",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Give up (exit 1) if the broker does not answer within SECONDS. Default: keep trying.",
)
def worker(  # click passes every option by keyword
    *,
    target: str,
    pool: str,
    concurrency: int | None,
    queues: str | None,
    grace: float,
    lease: float,
    no_scheduler: bool,
    metrics_port: str | None,
    log_level: str,
    log_format: str,
    wait_for_broker: float | None,
) -> None:
    """Run tasks from a durable app's broker: TARGET is module:app (or a module).

    A module without an `app` attribute means the default app, whose broker
    is OFFLOAD_URL. The worker also sends the app's periodic ticks (each
    once, however many workers run) unless --no-scheduler. SIGTERM or
    Ctrl-C stops claiming, lets running tasks finish for --grace seconds
    and puts the rest back; a second signal exits at once (its heartbeat
    lapses within 10 s and another worker takes them).
    """
    _logformat.configure(log_level, log_format)
    app = _load_app(target)
    if not app.durable:
        raise click.UsageError(
            f"{target} is an in-process app: there is no broker for a worker to serve. "
            "Give it a URL (offload.App('sqlite:///jobs.db')) or set OFFLOAD_URL."
        )
    reach_broker(app, wait_for_broker)
    names = [name.strip() for name in queues.split(",") if name.strip()] if queues else None
    runner = app.worker(
        queues=names, pool=pool, concurrency=concurrency, lease=lease, scheduler=not no_scheduler
    )
    if metrics_port:
        log.info("offload worker %d: metrics on %s", os.getpid(), serve_metrics(app, metrics_port))
    serve(app, runner, names, pool, grace)


@main.command()
@click.option("-n", "--tasks", default=100, show_default=True, help="How many tasks.")
@click.option("-d", "--duration", default=0.1, show_default=True, help="Seconds each task sleeps.")
@click.option(
    "-w", "--workers", type=int, default=None, help="Threads (default: tasks + 10, as bg.n = 110)."
)
@click.option(
    "--skip-sequential",
    is_flag=True,
    help="Skip the one-after-another baseline (it takes tasks x duration seconds).",
)
def demo(tasks: int, duration: float, workers: int | None, skip_sequential: bool) -> None:
    """The seed experiment: N sleeping tasks, one after another, then the blog's cell.

    The cell runs as the blog wrote it: the pool sized first, every call
    made, then a busy loop until every future is done.
    """
    if tasks < 1 or duration < 0 or (workers is not None and workers < 1):
        raise click.UsageError("--tasks and --workers must be >= 1, --duration >= 0")
    workers = workers or tasks + 10
    click.echo(f"{tasks} tasks of time.sleep({duration:g})")
    sequential = None if skip_sequential else _sequential_baseline(tasks, duration)
    parallel = _blog_cell(tasks, duration, workers)
    click.echo(f"  with offload, {workers:3d} threads: {parallel:8.3f} s")
    ideal = -(-tasks // workers) * duration  # rounds of `workers` tasks at a time
    if sequential is not None:
        click.echo(f"  speed-up: {sequential / parallel:.1f}x (the ideal is {ideal:g} s in all)")
    else:
        click.echo(
            f"  (the ideal is {ideal:g} s in all; one after another: {tasks * duration:g} s)"
        )


SAY_HOW_LONG = 5.0
"""Seconds of baseline past which the demo says how long it will take first."""


def _sequential_baseline(tasks: int, duration: float) -> float | None:
    """Seconds to run the tasks one after another; None if the user skipped it (Ctrl-C)."""
    expected = tasks * duration
    if expected >= SAY_HOW_LONG:
        click.echo(
            f"  one after another takes about {expected:g} s (Ctrl-C skips it; "
            "--skip-sequential next time)..."
        )
    start = time.perf_counter()
    try:
        for _ in range(tasks):
            time.sleep(duration)
    except KeyboardInterrupt:
        click.echo("  one after another:         skipped")
        return None
    sequential = time.perf_counter() - start
    click.echo(f"  one after another:         {sequential:8.3f} s")
    return sequential


def _blog_cell(tasks: int, duration: float, workers: int) -> float:
    """The blog's cell on an app of ``workers`` threads, busy loop included; wall seconds."""
    from ._app import App

    with App(threads=workers, name="offload-demo") as app:
        bg_work = app.task(name="demo.sleep")(nap)
        start = time.perf_counter()
        f_list = [bg_work(duration) for _ in range(tasks)]
        while not all([f.done() for f in f_list]):  # the blog's own line, busy loop included
            pass
        wall = time.perf_counter() - start
        for f in f_list:
            f.result()  # a failure says so here, not as a silent wrong figure
    return wall


def nap(seconds: float) -> None:
    """The demo's task: sleep, as the seed blog's ``work()`` does."""
    time.sleep(seconds)


if __name__ == "__main__":  # pragma: no cover
    main()
