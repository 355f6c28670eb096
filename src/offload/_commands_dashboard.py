"""``offload dashboard``: serve the web dashboard of a durable app's broker.

Needs the ``dashboard`` extra (Starlette, Jinja2, Uvicorn), imported only
when the command runs. Loopback by default; any other address needs a
password (``--password`` or ``OFFLOAD_DASHBOARD_PASSWORD``), or the
command refuses to start and says why.
"""

from __future__ import annotations

import click

from ._commands import _APP_OPTION, _inspecting
from ._errors import ConfigurationError


@click.command()
@_APP_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--password",
    envvar="OFFLOAD_DASHBOARD_PASSWORD",
    help="Ask visitors for it (HTTP Basic, any user name); needed beyond loopback. "
    "Env: OFFLOAD_DASHBOARD_PASSWORD (keeps it out of the process list).",
)
@click.option("--read-only", is_flag=True, help="Show jobs; allow no retry, cancel or purge.")
def dashboard(
    target: str | None, host: str, port: int, password: str | None, read_only: bool
) -> None:
    """Serve the web dashboard: queues, jobs, dead letters, workers (Ctrl-C stops).

    Reads the broker of --app module:app, or of OFFLOAD_URL.
    """
    try:
        import uvicorn

        from .dashboard import check_bind, create_app
    except ImportError as error:
        raise click.UsageError(
            f'the dashboard needs its extra: pip install "offload[dashboard]" ({error})'
        ) from None
    try:
        check_bind(host, password)
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from None
    with _inspecting(target) as (app, _):
        asgi = create_app(app, password=password, read_only=read_only)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"offload dashboard on http://{shown}:{port}/ (Ctrl-C stops)")
        uvicorn.run(asgi, host=host, port=port, log_level="warning", server_header=False)
