"""Serving a worker until it is told to stop: what `offload worker` and Django's
`manage.py offload_worker` both do once their worker is built.

The first SIGTERM or SIGINT stops claiming and drains for the grace period;
the second ends the process at once (leases and the registry make that safe).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from ._brokers._url import redacted

if TYPE_CHECKING:
    from ._app import App
    from ._worker import Worker

log = logging.getLogger(__name__)


def serve(app: App, runner: Worker, queues: list[str] | None, pool: str, grace: float) -> None:
    """Run ``runner`` until SIGTERM/SIGINT, then drain it for ``grace`` seconds."""
    stop = _install_signal_handlers()
    runner.start()
    log.info(
        "offload worker %d: broker %s, queues %s, pool %s, concurrency %d",
        os.getpid(),
        redacted(app.url),
        ",".join(queues) if queues else "all",
        pool,
        runner.size(pool),
    )
    while not stop.wait(0.5):
        pass
    log.info(
        "offload worker %d: stopping; up to %gs for running tasks (signal again to exit now)",
        os.getpid(),
        grace,
    )
    released = runner.drain(grace)
    if released:
        log.warning("offload worker %d: released %d unfinished tasks", os.getpid(), released)
    app.broker.close()
    log.info("offload worker %d: stopped", os.getpid())


def _install_signal_handlers() -> threading.Event:
    """First SIGTERM/SIGINT: set the event. Second: the process ends at once.

    After the first signal the default action is restored, so the second
    ends the process in the kernel, whatever Python is doing (a handler
    would wait for the main thread to come back from C code).
    """
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
