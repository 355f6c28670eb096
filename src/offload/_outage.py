"""Broker outages, logged once when they start and once when they end."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class Outage:
    """Logs a broker outage once when it starts and once when it ends.

    Every thread that meets the broker down reports here; a flood of
    identical tracebacks helps nobody.
    """

    def __init__(self, who: str = "worker", meanwhile: str = "running tasks go on") -> None:
        self._who = who
        self._meanwhile = meanwhile
        self._lock = threading.Lock()
        self.since: float | None = None
        """When the outage began (``time.monotonic()``); None while the broker is reachable."""

    def failed(self, doing: str, error: BaseException) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        log.error(
            "offload %s: broker unreachable while %s (%s: %s); %s, retrying with backoff",
            self._who,
            doing,
            type(error).__name__,
            error,
            self._meanwhile,
            exc_info=not isinstance(error, ConnectionError),
        )

    def recovered(self) -> None:
        if self.since is None:
            return
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            log.warning(
                "offload %s: broker reachable again after %.1fs",
                self._who,
                time.monotonic() - since,
            )
