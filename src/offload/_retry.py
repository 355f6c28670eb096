"""Retry policy: which failures are retried, and how long to wait between."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import ConfigurationError, Retry


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with a cap and jitter.

    The delay before retry ``n`` (1 for the first retry) is
    ``min(cap, base * factor ** (n - 1))``, then, with ``jitter=True``, a
    uniformly random value between half of that and all of it, so that
    many failing tasks do not retry in lockstep.

    >>> Backoff(base=1, cap=300).delay(4, jitter_source=lambda: 1.0)
    8.0
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ConfigurationError(
                f"Backoff(base={self.base}, cap={self.cap}): delays must be >= 0 seconds"
            )
        if self.factor < 1:
            raise ConfigurationError(
                f"Backoff(factor={self.factor}): the factor must be >= 1 (1 means a constant delay)"
            )

    def delay(self, retry: int, jitter_source: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        exponent = max(0, retry - 1)
        # Past ~1000 doublings float overflows; the cap has long been reached.
        raw = self.cap if exponent > 1000 else min(self.cap, self.base * self.factor**exponent)
        if not self.jitter:
            return raw
        return raw * (0.5 + 0.5 * jitter_source())


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` more attempts after the first, for exceptions in ``retry_on``."""

    retries: int = 0
    backoff: Backoff = DEFAULT_BACKOFF
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def retry_delay(
        self,
        error: BaseException,
        attempt: int,
        retries: int | None = None,
        jitter_source: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds until the next attempt, or ``None`` if ``error`` is final.

        ``attempt`` is the attempt that just failed (1-based); ``retries``
        overrides the policy's count for one call.
        """
        allowed = self.retries if retries is None else retries
        if attempt > allowed:
            return None
        if isinstance(error, Retry):
            if error.delay is not None:
                return error.delay
            return self.backoff.delay(attempt, jitter_source)
        if not isinstance(error, self.retry_on):
            return None
        return self.backoff.delay(attempt, jitter_source)
