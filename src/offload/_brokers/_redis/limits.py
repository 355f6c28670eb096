"""Rate and concurrency limits on the Redis server: one Lua script per step.

``lua/limit_token.lua``, ``limit_slot.lua`` and ``limit_release.lua`` run
the arithmetic of ``_limit_math`` atomically on the server, so the limit
holds across every worker on every host. Time is the broker's clock, as for
leases and ETAs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._clock import Clock
from .link import Link, Script
from .scripts import source


class RedisLimits:
    """The limits of one namespace (``broker.limits``)."""

    def __init__(
        self, link: Link, prefix: str, clock: Clock, call: Callable[[Callable[[bool], Any]], Any]
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._call = call  # the broker's retrying call: one outage, one log line
        self._token = Script(link, source("limit_token"))
        self._slot = Script(link, source("limit_slot"))
        self._release = Script(link, source("limit_release"))

    def take_token(self, name: str, interval: float, burst: int) -> float:
        args = [self._prefix, name, repr(self._clock.now()), repr(interval), burst]
        return float(self._call(lambda _: self._token(args)))

    def take_slot(self, name: str, holder: str, limit: int) -> float:
        args = [self._prefix, name, holder, limit, repr(self._clock.now())]
        return float(self._call(lambda _: self._slot(args)))

    def release_slot(self, name: str, holder: str, *, ran: bool = True) -> None:
        args = [self._prefix, name, holder, repr(self._clock.now()), "1" if ran else "0"]
        self._call(lambda _: self._release(args))
