"""The ``offload`` command."""

from __future__ import annotations

import time

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="offload")
def main() -> None:
    """offload: run Python functions in the background."""


@main.command()
@click.option("-n", "--tasks", default=100, show_default=True, help="How many tasks.")
@click.option("-d", "--duration", default=0.1, show_default=True, help="Seconds each task sleeps.")
@click.option(
    "-w", "--workers", type=int, default=None, help="Threads (default: tasks + 10, as bg.n = 110)."
)
def demo(tasks: int, duration: float, workers: int | None) -> None:
    """The seed experiment: N sleeping tasks, one after another, then with offload."""
    from ._app import App

    if tasks < 1 or duration < 0 or (workers is not None and workers < 1):
        raise click.UsageError("--tasks and --workers must be >= 1, --duration >= 0")
    workers = workers or tasks + 10
    click.echo(f"{tasks} tasks of time.sleep({duration:g})")

    start = time.perf_counter()
    for _ in range(tasks):
        time.sleep(duration)
    sequential = time.perf_counter() - start
    click.echo(f"  one after another:         {sequential:8.3f} s")

    with App(threads=workers, name="offload-demo") as app:
        sleep = app.task(name="demo.sleep")(nap)
        start = time.perf_counter()
        handles = sleep.map([duration] * tasks, progress=True)
        for handle in handles:
            handle.result()
        parallel = time.perf_counter() - start
    click.echo(f"  with offload, {workers:3d} threads: {parallel:8.3f} s")
    ideal = -(-tasks // workers) * duration  # rounds of `workers` tasks at a time
    click.echo(f"  speed-up: {sequential / parallel:.1f}x (the ideal is {ideal:g} s in all)")


def nap(seconds: float) -> None:
    """The demo's task: sleep, as the seed blog's ``work()`` does."""
    time.sleep(seconds)


if __name__ == "__main__":  # pragma: no cover
    main()
