"""``offload worker --metrics-port``: serve the worker's Prometheus metrics.

The app declares what is counted (``offload.contrib.metrics.Metrics`` in
``App(middleware=[...])``); this module only starts the HTTP endpoint, with
the broker's queue depth, lag and live workers added to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ._app import App


def serve_metrics(app: App, where: str) -> str:
    """Serve ``app``'s metrics on ``where`` (``PORT`` or ``HOST:PORT``); the URL it serves."""
    host, _, port_text = where.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.UsageError(
            f"--metrics-port {where!r}: give a port (9100) or an address and port (0.0.0.0:9100)"
        )
    try:
        from .contrib.metrics import Metrics, serve
    except ImportError as error:
        raise click.UsageError(
            f'--metrics-port needs the metrics extra: pip install "offload[metrics]" ({error})'
        ) from None
    found = [m for m in app.middleware if isinstance(m, Metrics)]
    if not found:
        raise click.UsageError(
            "--metrics-port serves what offload.contrib.metrics.Metrics counts, and this app "
            "has none: add it, App(url, middleware=[Metrics()])"
        )
    metrics = found[0]
    metrics.watch(app.inspector)
    try:
        serve(metrics.registry, int(port_text), host)
    except OSError as error:
        raise click.UsageError(f"--metrics-port {where}: cannot listen there ({error})") from None
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port_text}/metrics"
