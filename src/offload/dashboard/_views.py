"""The dashboard's pages and actions, one function each (``ROUTES``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .._brokers._base import WorkerListing
from .._commands import retry_dead
from .._commands_schedules import schedule_status
from .._message import State
from . import _charts, _data
from ._app import Dashboard, in_thread, json, redirect, state_param


async def overview(board: Dashboard, request: Request) -> Response:
    view = await in_thread(_data.overview, board.inspector)
    history = await in_thread(_charts.history, board.inspector)
    return board.page(request, "overview.html", overview=view, charts=history)


async def counts(board: Dashboard, request: Request) -> Response:
    return json(await in_thread(_data.counts_json, board.inspector))


async def charts(board: Dashboard, request: Request) -> Response:
    return json(await in_thread(_charts.charts_json, board.inspector))


async def jobs(board: Dashboard, request: Request) -> Response:
    return await _listing(board, request, "jobs.html", None)


async def dead(board: Dashboard, request: Request) -> Response:
    return await _listing(board, request, "dead.html", State.FAILED)


async def _listing(
    board: Dashboard, request: Request, template: str, fixed: State | None
) -> Response:
    params = request.query_params
    try:
        state = fixed or state_param(request)
    except ValueError as error:
        return PlainTextResponse(f"{error}\n", status_code=400)
    queue = params.get("queue") or None
    text = (params.get("q") or "").strip() or None
    after = params.get("after") or None
    try:
        page = await in_thread(_data.listing, board.inspector, state, queue, text, after)
    except ValueError as error:  # a cursor this broker did not make
        return PlainTextResponse(f"{error}\n", status_code=400)
    progress = await in_thread(_data.running_progress, board.inspector, page.jobs)
    return board.page(
        request,
        template,
        listing=page,
        progress=progress,
        state=None if state is None else state.value,
        queue=queue or "",
        q=text or "",
        first_page=after is None,
    )


async def job(board: Dashboard, request: Request) -> Response:
    job_id = request.path_params["job_id"]
    info = await in_thread(_data.job, board.inspector, job_id)
    if info is None:
        return board.page(request, "missing.html", 404, job_id=job_id)
    values, note = _data.arguments(board.serializer, info.payload)
    return board.page(
        request,
        "job.html",
        job=info,
        arguments=values,
        arguments_note=note,
        result=_data.result(board.serializer, info),
        duration=_data.duration(info),
        error_title=_data.error_title(info.error),
        progress=None if info.progress is None else _data.progress_view(info.progress),
    )


async def job_json(board: Dashboard, request: Request) -> Response:
    info = await in_thread(_data.job, board.inspector, request.path_params["job_id"])
    if info is None:
        return json({"state": None})
    progress = None if info.progress is None else _data.progress_view(info.progress).json()
    return json({"state": info.state.value, "attempt": info.attempt, "progress": progress})


async def retry(board: Dashboard, request: Request) -> Response:
    refused = await board.refused(request)
    if refused is not None:
        return refused
    job_id = request.path_params["job_id"]
    done = await in_thread(board.inspector.retry, job_id)
    return redirect(f"/jobs/{job_id}", "retried" if done else "not-retried")


async def cancel(board: Dashboard, request: Request) -> Response:
    refused = await board.refused(request)
    if refused is not None:
        return refused
    job_id = request.path_params["job_id"]
    if not await in_thread(board.inspector.cancel, job_id):
        return redirect(f"/jobs/{job_id}", "not-cancelled")
    job = await in_thread(board.inspector.job, job_id)
    running = job is not None and job.state is State.RUNNING  # asked: its worker stops it
    return redirect(f"/jobs/{job_id}", "cancel-asked" if running else "cancelled")


async def retry_all(board: Dashboard, request: Request) -> Response:
    refused = await board.refused(request)
    if refused is not None:
        return refused
    await in_thread(retry_dead, board.inspector, None)
    return redirect("/dead", "retried-all")


async def purge(board: Dashboard, request: Request) -> Response:
    refused = await board.refused(request)
    if refused is not None:
        return refused
    await in_thread(board.inspector.purge, State.FAILED, None)
    return redirect("/dead", "purged")


async def workers(board: Dashboard, request: Request) -> Response:
    inspector = board.inspector
    listed = None
    if isinstance(inspector, WorkerListing):
        listed = await in_thread(inspector.workers)
    return board.page(request, "workers.html", workers=listed)


async def schedules(board: Dashboard, request: Request) -> Response:
    """The app's periodic schedules: last and next fire times, the last run's state."""
    app, inspector = board.app, board.inspector
    rows = [
        await in_thread(schedule_status, app, inspector, schedule)
        for schedule in app.schedules.values()
    ]
    return board.page(request, "schedules.html", schedules=rows)


async def metrics(board: Dashboard, request: Request) -> Response:
    """The broker's Prometheus metrics: jobs per queue and state, lag, live workers."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from ..contrib.metrics import BrokerCollector
    except ImportError:
        return PlainTextResponse(
            '/metrics needs the metrics extra: pip install "offload[metrics]"\n', status_code=404
        )
    registry = CollectorRegistry()
    registry.register(BrokerCollector(board.inspector))
    body = await in_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


ROUTES: list[tuple[str, str, Any]] = [
    ("/", "GET", overview),
    ("/api/counts", "GET", counts),
    ("/api/charts", "GET", charts),
    ("/jobs", "GET", jobs),
    ("/jobs/{job_id}", "GET", job),
    ("/api/jobs/{job_id}", "GET", job_json),
    ("/jobs/{job_id}/retry", "POST", retry),
    ("/jobs/{job_id}/cancel", "POST", cancel),
    ("/dead", "GET", dead),
    ("/dead/retry-all", "POST", retry_all),
    ("/dead/purge", "POST", purge),
    ("/workers", "GET", workers),
    ("/schedules", "GET", schedules),
    ("/metrics", "GET", metrics),
]
