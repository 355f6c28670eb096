"""The dashboard's ASGI application: ``create_app(app)``.

Pages are rendered on the server (Jinja2, autoescaped: arguments, results
and errors are data, shown as text); the only script is this package's own
``static/dashboard.js``, which polls JSON endpoints to keep counts, charts
and a job's state and progress live. Every action is a POST form carrying a CSRF token
(``_security``); a read-only dashboard shows no forms and refuses them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .._brokers._base import Inspector
from .._brokers._url import redacted
from .._message import State
from .._serializers import Serializer
from . import _data
from ._security import CSRF_FIELD, Csrf, Guard

if TYPE_CHECKING:
    from .._app import App

HERE = Path(__file__).parent

NOTES = {
    "retried": "Job re-queued: a worker will run it again.",
    "not-retried": "Not re-queued: only failed or cancelled jobs can be retried, and only "
    "while no other live job holds the same key.",
    "cancelled": "Job cancelled.",
    "cancel-asked": "Asked to stop: the worker running it stops it at its next heartbeat.",
    "not-cancelled": "Not cancelled: it had finished already.",
    "retried-all": "Failed jobs re-queued.",
    "purged": "Failed jobs deleted.",
}


@dataclass
class Dashboard:
    """What every page needs: where the jobs are, and what the viewer may do."""

    app: App
    """The app whose broker this is (its schedules)."""
    inspector: Inspector
    serializer: Serializer | None
    broker: str
    read_only: bool
    csrf: Csrf
    templates: Jinja2Templates

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        cookie = request.scope["state"].get("csrf_cookie", "")
        context = {
            "broker": self.broker,
            "read_only": self.read_only,
            "csrf": self.csrf.token(cookie),
            "csrf_field": CSRF_FIELD,
            "states": _data.state_names(_data.COLUMNS),
            "note": NOTES.get(request.query_params.get("note", "")),
            **values,
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    async def refused(self, request: Request) -> Response | None:
        """Why a POST is refused (read-only, a bad CSRF token), or ``None`` to go ahead."""
        if self.read_only:
            return PlainTextResponse("refused: this dashboard is read-only\n", status_code=403)
        form = await request.form()
        token = form.get(CSRF_FIELD)
        cookie = request.scope["state"].get("csrf_cookie")
        if not self.csrf.valid(cookie, token if isinstance(token, str) else None):
            return PlainTextResponse(
                "refused: the form's CSRF token is missing or wrong; reload the page and "
                "try again\n",
                status_code=403,
            )
        return None


def create_app(
    app: App,
    *,
    password: str | None = None,
    read_only: bool = False,
    inspector: Inspector | None = None,
) -> Any:
    """The dashboard of ``app``'s broker, as an ASGI application (serve it with uvicorn).

    ``password`` asks every visitor for it (HTTP Basic, any user name);
    ``read_only`` hides and refuses every action. ``inspector`` replaces the
    app's own (tests).
    """
    from . import _views

    environment = jinja2.Environment(  # every value shown is escaped: jobs hold data
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True
    )
    environment.globals.update(when=_data.when, ago=_data.ago, error_title=_data.error_title)
    templates = Jinja2Templates(env=environment)
    board = Dashboard(
        app=app,
        inspector=inspector if inspector is not None else app.inspector,
        serializer=app.serializer,
        broker=redacted(app.url),
        read_only=read_only,
        csrf=Csrf(),
        templates=templates,
    )
    routes: list[BaseRoute] = [
        Route(path, _bound(board, fn), methods=[m]) for path, m, fn in _views.ROUTES
    ]
    routes.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))
    starlette = Starlette(routes=routes, exception_handlers={404: _not_found})
    return Guard(starlette, password=password)


def _bound(board: Dashboard, view: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        response: Response = await view(board, request)
        return response

    endpoint.__name__ = view.__name__
    return endpoint


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("not found\n", status_code=404)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run a (blocking) inspector call off the event loop."""
    return run_in_threadpool(fn, *args)


def state_param(request: Request, name: str = "state") -> State | None:
    """The ``state`` query parameter; ``ValueError`` naming the choices for a wrong one."""
    value = request.query_params.get(name) or None
    if value is None:
        return None
    try:
        return State(value)
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise ValueError(f"state={value!r} is not a job state; choose one of {names}") from None


def redirect(path: str, note: str) -> Response:
    return RedirectResponse(f"{path}?note={note}", status_code=303)


def json(data: Any) -> Response:
    return JSONResponse(data)
