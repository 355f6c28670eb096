"""``offload workers``: the workers alive now, as they registered in the broker.

Each worker registers as it starts and beats every few seconds; one that
stops beating (killed, cut off) disappears after its lapse (10 s), and a
clean stop removes it at once. ``--json`` prints one object per worker,
for scripts and monitoring.
"""

from __future__ import annotations

import json
import time

import click

from ._brokers._base import WorkerInfo, WorkerListing
from ._commands import _APP_OPTION, _echo, _inspecting, _table, _when

_HEADERS = ("ID", "HOST", "PID", "QUEUES", "POOL", "CONC", "RUNNING", "STARTED", "LAST SEEN")


@click.command()
@_APP_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per worker, per line.")
def workers(target: str | None, as_json: bool) -> None:
    """List the live workers of the app's broker, oldest first.

    Columns: id (host:pid:random), host, pid, queues (all: every queue),
    pool, concurrency, jobs running now, when it started, seconds since its
    last heartbeat.
    """
    with _inspecting(target) as (app, inspector):
        if not isinstance(inspector, WorkerListing):
            raise click.ClickException(f"{app.broker!r} keeps no registry of workers")
        found = inspector.workers()
    if as_json:
        for info in found:
            click.echo(json.dumps(_as_dict(info)))
        return
    if not found:
        click.echo("no live workers")
        return
    now = time.time()
    _echo(_table(_HEADERS, [_row(info, now) for info in found], right={2, 5, 6}))


def _row(info: WorkerInfo, now: float) -> list[str]:
    return [
        info.id,
        info.host,
        str(info.pid),
        ",".join(info.queues) or "all",
        info.pool,
        str(info.concurrency),
        str(len(info.running)),
        _when(info.started),
        f"{max(0.0, now - info.last_seen):.0f}s ago",
    ]


def _as_dict(info: WorkerInfo) -> dict[str, object]:
    data = info._asdict()
    data["queues"] = list(info.queues)
    data["running"] = list(info.running)
    return data
