"""``offload worker --wait-for-broker SECONDS``: reach the broker before starting, or give up.

A worker whose broker does not answer at start says so in one line that
names the broker (password redacted) and what it will do: keep retrying
(the default, so that workers started before their broker come up by
themselves), or, with ``--wait-for-broker``, exit with status 1 once that
many seconds have passed (a deploy then fails fast, visibly).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import click

from ._brokers._url import redacted

if TYPE_CHECKING:
    from ._app import App

log = logging.getLogger(__name__)

PROBE_ID = "offload-probe"
"""A job id looked up to test the broker: one indexed read, whatever it finds."""
MAX_PAUSE = 5.0


def reach_broker(app: App, wait: float | None) -> None:
    """Return once ``app``'s broker answers; after ``wait`` seconds (None: never), exit."""
    where = redacted(app.url)
    deadline = None if wait is None else time.monotonic() + wait
    pause, said = 0.5, False
    while True:
        try:
            app.inspector.job(PROBE_ID)
        except (ConnectionError, OSError) as error:  # BrokerUnavailable is a ConnectionError
            if not said:
                log.error(
                    "offload worker: cannot reach the broker at %s (%s); %s",
                    where,
                    _first_line(error),
                    "retrying until it answers (--wait-for-broker SECONDS to give up)"
                    if wait is None
                    else f"retrying for up to {wait:g}s, then exiting",
                )
                said = True
            if deadline is not None and time.monotonic() + pause > deadline:
                raise click.ClickException(
                    f"the broker at {where} did not answer within --wait-for-broker "
                    f"{wait:g}s; not starting"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
        else:
            if said:
                log.warning("offload worker: the broker at %s answers now; starting", where)
            return


def _first_line(error: BaseException) -> str:
    """The driver's reason when the error carries one, else its own first line."""
    reason = error.__cause__ if error.__cause__ is not None else error
    lines = str(reason).strip().splitlines() or [type(reason).__name__]
    return lines[0]
