"""``offload status | jobs | show | retry | cancel | purge``: look into a durable app's broker.

Each command reads the broker of ``--app module:app`` (the module that
declares the tasks, as for ``offload worker``) or, without it, of
``OFFLOAD_URL``. They only use the broker's inspection capability
(``Inspector``), so every durable broker answers them the same way.

Exit codes: 0 when the command did what it was asked (a bulk command with
nothing to act on included), 1 when the job named is unknown or the action
does not apply to it, 2 for usage errors.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import shutil
import sys
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING

import click

from ._brokers import Inspector
from ._brokers._base import Migrating
from ._brokers._url import redacted
from ._errors import OffloadError, PayloadRejected
from ._message import ErrorInfo, JobInfo, Progress, State
from ._serializers import Serializer, decode_call

if TYPE_CHECKING:
    from ._app import App

_MIN_ERROR = 20
"""Columns the last error needs to be worth a column of its own in ``jobs``."""
_DEFAULT_WIDTH = 160
"""Line width when the output is not a terminal (a pipe, a file): keep rows whole."""
_VALUE_WIDTH = 500
"""Characters of a decoded argument or result ``show`` prints before cutting."""
_RETRY_BATCH = 500


def load_app(target: str) -> App:
    """The App named by ``module:attribute`` (``offload worker TARGET`` and ``--app``).

    A module without an ``app`` attribute means the default app, whose
    broker is ``OFFLOAD_URL``.
    """
    from ._app import App
    from ._default import default_app

    module_name, _, attribute = target.partition(":")
    sys.path.insert(0, os.getcwd())  # as `python -m` would: the project's modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise click.UsageError(f"cannot import {module_name!r}: {error}") from None
    value = getattr(module, attribute or "app", None)
    if value is None:
        if attribute:
            raise click.UsageError(f"{module_name!r} has no attribute {attribute!r}")
        return default_app()
    if not isinstance(value, App):
        raise click.UsageError(f"{target} is a {type(value).__name__}, not an offload.App")
    return value


def register(group: click.Group) -> None:
    """Add the inspection commands to ``group`` (the ``offload`` command)."""
    for command in (status, jobs, show, retry, cancel, purge, migrate):
        group.add_command(command)


# -- opening the broker ---------------------------------------------------------------

_APP_OPTION = click.option(
    "--app",
    "target",
    metavar="MODULE:APP",
    help="The app to inspect, as given to `offload worker`. Default: the broker of OFFLOAD_URL.",
)


@contextlib.contextmanager
def _inspecting(target: str | None) -> Iterator[tuple[App, Inspector]]:
    """The app named by ``--app`` (or built from OFFLOAD_URL) and its broker's inspection.

    An app built here is shut down afterwards; one loaded from the user's
    module is left as it is. Errors of offload become one-line messages.
    """
    try:
        app = load_app(target) if target else _app_from_environment()
    except OffloadError as error:  # e.g. the module's App(url) refused its URL
        raise click.UsageError(f"{target}: {error}") from None
    built = not target
    try:
        if not app.durable:
            raise click.UsageError(_in_process(target))
        yield app, app.inspector
    except OffloadError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if built:
            app.shutdown(wait=False)


def _in_process(target: str | None) -> str:
    why = "its jobs live only inside the program that runs them: nothing is stored to inspect"
    if target is None:
        return (
            f"OFFLOAD_URL=memory:// names the in-process broker; {why}. Set OFFLOAD_URL "
            "to the durable broker your workers use (e.g. sqlite:///jobs.db)."
        )
    return (
        f"{target} is an in-process app; {why}. Give it a URL "
        "(offload.App('sqlite:///jobs.db')) or, for the default app, set OFFLOAD_URL."
    )


def _app_from_environment() -> App:
    from ._app import App

    url = os.environ.get("OFFLOAD_URL")
    if not url:
        raise click.UsageError(
            "which app? Pass --app module:app (the module that declares your tasks) "
            "or set OFFLOAD_URL to its broker (e.g. OFFLOAD_URL=sqlite:///jobs.db)."
        )
    try:
        return App(url, name="offload-cli")
    except OffloadError as error:
        raise click.UsageError(f"OFFLOAD_URL={redacted(url)}: {error}") from None


# -- schema -----------------------------------------------------------------------------


@click.command()
@_APP_OPTION
def migrate(target: str | None) -> None:
    """Bring the broker's schema up to this version of offload (PostgreSQL).

    Apps migrate on first use unless made with migrate=False; this is for
    deployments that run migrations as their own step. Safe to run from
    several machines at once (an advisory lock orders them).
    """
    with _inspecting(target) as (app, _):
        if not isinstance(app.broker, Migrating):
            click.echo(f"{redacted(app.url)}: nothing to migrate (this broker migrates on its own)")
            return
        click.echo(f"{redacted(app.url)}: schema at version {app.broker.migrate()}")


# -- status and jobs ------------------------------------------------------------------


@click.command()
@_APP_OPTION
def status(target: str | None) -> None:
    """Count the jobs of each queue in each state.

    Finished jobs count until their result TTL passes; failed ones (the
    dead-letter set) until `offload purge --state dead`.
    """
    with _inspecting(target) as (_, inspector):
        counts = inspector.counts()
    _echo(_status_lines(counts))


def _status_lines(counts: dict[str, dict[State, int]]) -> list[str]:
    states = list(State)
    rows: list[list[str]] = []
    totals = dict.fromkeys(states, 0)
    for queue in sorted(counts):
        row = [counts[queue].get(s, 0) for s in states]
        rows.append([queue, *map(str, row), str(sum(row))])
        for s, n in zip(states, row, strict=True):
            totals[s] += n
    rows.append(["TOTAL", *(str(totals[s]) for s in states), str(sum(totals.values()))])
    headers = ["QUEUE", *(s.value.upper() for s in states), "TOTAL"]
    return _table(headers, rows, right=range(1, len(headers)))


_STATE_NAMES = [state.value for state in State]


@click.command()
@click.option("--state", type=click.Choice(_STATE_NAMES), help="Only jobs in this state.")
@click.option("--queue", help="Only jobs of this queue.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many jobs, newest first.",
)
@_APP_OPTION
def jobs(state: str | None, queue: str | None, limit: int, target: str | None) -> None:
    """List jobs as a table, newest first.

    Columns: id, task, queue, state, attempt, created (local time) and the
    first line of the last error. `offload jobs --state failed` lists the
    dead-letter set.
    In a narrow terminal each job takes two lines, the second holding its
    task and last error.
    """
    with _inspecting(target) as (_, inspector):
        found = inspector.jobs(None if state is None else State(state), queue, limit)
    if not found:
        where = " ".join(filter(None, [state, f"in queue {queue}" if queue else None]))
        click.echo(f"no {where} jobs" if where else "no jobs")
        return
    width = shutil.get_terminal_size((_DEFAULT_WIDTH, 24)).columns
    _echo(_job_lines(found, width))


_JOB_HEADERS = ("ID", "TASK", "QUEUE", "STATE", "ATTEMPT", "CREATED", "LAST ERROR")


def _job_lines(found: Sequence[JobInfo], width: int) -> list[str]:
    """One line per job when it fits in ``width``; else two (task and error below)."""
    rows = [
        [job.id, job.task, job.queue, job.state.value, str(job.attempt), _when(job.created)]
        for job in found
    ]
    errors = [_error_title(job.error, short=True) for job in found]
    room = width - len(_table(_JOB_HEADERS[:6], rows)[0]) - 2
    if room >= _MIN_ERROR:
        wide = [[*row, _clip(error, room)] for row, error in zip(rows, errors, strict=True)]
        return _table(_JOB_HEADERS, wide, right={4})
    # ID, STATE, ATTEMPT, CREATED, QUEUE on the first line; TASK and error below.
    narrow = [[row[0], row[3], row[4], row[5], row[2]] for row in rows]
    table = _table(["ID", "STATE", "ATTEMPT", "CREATED", "QUEUE"], narrow, right={2})
    lines = [table[0], _clip("  TASK  LAST ERROR", width)]
    for line, job, error in zip(table[1:], found, errors, strict=True):
        lines += [line, _clip(f"  {job.task}  {error}".rstrip(), width)]
    return lines


# -- show -----------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="ID")
@_APP_OPTION
def show(job_id: str, target: str | None) -> None:
    """Show one job: arguments, attempts, error, result.

    Prints the job's fields, its arguments decoded with the app's
    serializer, the last error with the traceback from the worker, and the
    result once the job succeeded. Exits 1 if there is no job ID.
    """
    with _inspecting(target) as (app, _):
        job = app.job(job_id)  # with its progress
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        serializer = app.serializer
        assert serializer is not None  # a durable app always has one
        lines = _field_lines(job)
        lines += _argument_lines(serializer, job.payload)
        lines += _error_lines(job.error)
        if job.state is State.SUCCEEDED:
            lines += _result_lines(serializer, job.result)
    _echo(lines)


def _field_lines(job: JobInfo) -> list[str]:
    attempts = str(job.attempt)
    if job.max_deliveries is not None:
        attempts += f" (at most {job.max_deliveries} deliveries)"
    fields = [
        ("id", job.id),
        ("task", job.task),
        ("queue", job.queue),
        ("state", job.state.value),
        ("attempts", attempts),
        ("priority", str(job.priority)),
        ("created", _when(job.created)),
        ("eta", _when(job.eta)),
        ("finished", _when(job.finished)),
        ("key", job.key or "-"),
        ("progress", _progress_text(job.progress)),
    ]
    return [f"{name + ':':<10}{value}" for name, value in fields]


def _progress_text(progress: Progress | None) -> str:
    """``3 of 10 (30%), rows copied, at 2026-12-05 14:02:11``; ``-`` if none was reported."""
    if progress is None:
        return "-"
    done, total, note, at = progress
    text = f"{done:g}" if total is None else f"{done:g} of {total:g}"
    if progress.fraction is not None:
        text += f" ({progress.fraction:.0%})"
    if note:
        text += f", {note}"
    return f"{text}, at {_when(at)}"


def _argument_lines(serializer: Serializer, payload: bytes | None) -> list[str]:
    if payload is None:
        return ["arguments: none stored"]
    try:
        args, kwargs = decode_call(serializer, payload)
    except PayloadRejected as error:
        return [
            f"arguments: cannot be decoded here ({error})",
            f"  raw payload: {len(payload)} bytes",
        ]
    named = [(f"args[{i}]", value) for i, value in enumerate(args)]
    named += [(f"kwargs[{key!r}]", value) for key, value in kwargs.items()]
    if not named:
        return ["arguments: none"]
    return ["arguments:"] + [
        f"  {path} = {_clip(repr(value), _VALUE_WIDTH)}" for path, value in named
    ]


def _error_lines(error: ErrorInfo | None) -> list[str]:
    if error is None:
        return []
    lines = [f"last error: {_error_title(error)}"]
    lines += [f"  {line}" for line in error.message.splitlines()[1:]]
    if error.traceback:
        lines.append("traceback:")
        lines += [f"  {line}" for line in error.traceback.rstrip().splitlines()]
    return lines


def _result_lines(serializer: Serializer, data: bytes | None) -> list[str]:
    if data is None:
        return ["result:   not stored"]
    try:
        value = serializer.decode(data)
    except PayloadRejected as error:
        return [f"result:   cannot be decoded here ({error})", f"  raw: {len(data)} bytes"]
    return [f"result:   {_clip(repr(value), _VALUE_WIDTH)}"]


# -- acting on jobs -------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--all-dead", is_flag=True, help="Every failed job (the dead-letter set).")
@click.option("--queue", help="With --all-dead: only failed jobs of this queue.")
@_APP_OPTION
def retry(job_id: str | None, all_dead: bool, queue: str | None, target: str | None) -> None:
    """Run failed or cancelled jobs again.

    Each is queued at once, with its attempts reset. `offload retry ID`
    re-queues one job (exit 1 if there is no job ID, or it is not failed or
    cancelled); `offload retry --all-dead` re-queues every failed job (the
    dead-letter set). Prints how many were re-queued.
    """
    if (job_id is None) == (not all_dead):
        raise click.UsageError("give a job ID or --all-dead (not both)")
    if queue is not None and not all_dead:
        raise click.UsageError("--queue goes with --all-dead")
    with _inspecting(target) as (_, inspector):
        if job_id is None:
            requeued, held = retry_dead(inspector, queue)
            click.echo(f"re-queued {_count(requeued, 'failed job')}")
            if held:
                click.echo(f"left {held} failed: another live job holds each one's key")
            return
        if not inspector.retry(job_id):
            raise click.ClickException(_why_not_retried(inspector.job(job_id), job_id))
    click.echo(f"re-queued 1 job: {job_id}")


def retry_dead(inspector: Inspector, queue: str | None) -> tuple[int, int]:
    """Retry every failed job of ``queue`` (all for None); (how many were re-queued, how
    many not: their key is held by another job). ``offload retry --all-dead``, the dashboard."""
    requeued = 0
    left: set[str] = set()  # failed jobs whose key another job holds: they stay failed
    while True:
        # Re-queued jobs leave the failed set; fetching past those left ensures progress.
        batch = inspector.jobs(State.FAILED, queue, limit=len(left) + _RETRY_BATCH)
        todo = [job.id for job in batch if job.id not in left]
        if not todo:
            return requeued, len(left)
        for job_id in todo:
            if inspector.retry(job_id):
                requeued += 1
            else:
                left.add(job_id)


def _why_not_retried(job: JobInfo | None, job_id: str) -> str:
    if job is None:
        return f"no job {job_id}"
    if job.state not in (State.FAILED, State.CANCELLED):
        return f"job {job_id} is {job.state}: only failed or cancelled jobs can be retried"
    return f"job {job_id} was not re-queued: another live job holds its key {job.key!r}"


@click.command()
@click.argument("job_id", metavar="ID")
@_APP_OPTION
def cancel(job_id: str, target: str | None) -> None:
    """Cancel a job: at once if it waits, at its worker's next heartbeat if it runs.

    A queued job, or one waiting to retry, is cancelled now. A running one
    is asked to stop: its worker hears it when it next renews the job's
    lease (every third of the lease) and stops it (a thread is told and the
    job recorded cancelled). Exits 1 if there is no job ID or it finished.
    """
    with _inspecting(target) as (_, inspector):
        if inspector.cancel(job_id):
            job = inspector.job(job_id)
            if job is not None and job.state is State.RUNNING:
                click.echo(
                    f"asked job {job_id} to stop: its worker stops it at its next heartbeat "
                    "(`offload show` then says cancelled)"
                )
            else:
                click.echo(f"cancelled job {job_id}")
            return
        job = inspector.job(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    raise click.ClickException(f"job {job_id} is {job.state} already: there is nothing to cancel")


_PURGEABLE = {"dead": State.FAILED, "failed": State.FAILED}
_PURGEABLE.update({s.value: s for s in (State.SUCCEEDED, State.CANCELLED)})


@click.command()
@click.option(
    "--state",
    "state_name",
    type=click.Choice(list(_PURGEABLE)),
    required=True,
    help="Which finished jobs: dead (the same as failed), succeeded or cancelled.",
)
@click.option("--queue", help="Only jobs of this queue.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_APP_OPTION
def purge(state_name: str, queue: str | None, yes: bool, target: str | None) -> None:
    """Delete finished jobs: dead, succeeded or cancelled.

    `offload purge --state dead` empties the dead-letter set. Asks for
    confirmation unless --yes, then prints how many were deleted. Failed
    jobs stay until purged; succeeded and cancelled ones also go by
    themselves when their result TTL passes.
    """
    state = _PURGEABLE[state_name]
    where = f" in queue {queue}" if queue else ""
    with _inspecting(target) as (_, inspector):
        counts = inspector.counts()
        present = sum(c.get(state, 0) for q, c in counts.items() if queue in (None, q))
        if not present:
            click.echo(f"no {state} jobs{where}: nothing deleted")
            return
        if not yes:
            click.confirm(f"Delete {_count(present, f'{state} job')}{where}?", abort=True)
        deleted = inspector.purge(state, queue)
    click.echo(f"deleted {_count(deleted, f'{state} job')}{where}")


# -- text -----------------------------------------------------------------------------


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> list[str]:
    """Lines of aligned columns, two spaces apart; columns in ``right`` right-aligned."""
    widths = [
        max([len(header)] + [len(row[i]) for row in rows]) for i, header in enumerate(headers)
    ]
    lines = []
    for cells in [headers, *rows]:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return lines


def _echo(lines: Sequence[str]) -> None:
    click.echo("\n".join(lines))


def _when(epoch: float | None) -> str:
    """Local time, ISO 8601 to the second; ``-`` for none."""
    if not epoch:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).isoformat(timespec="seconds")


def _error_title(error: ErrorInfo | None, *, short: bool = False) -> str:
    """``ValueError: message`` (first line); ``short`` drops the type's module."""
    if error is None:
        return ""
    kind = error.type.rpartition(".")[2] if short else error.type.removeprefix("builtins.")
    lines = error.message.splitlines()
    return f"{kind}: {lines[0]}" if lines else kind


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"
