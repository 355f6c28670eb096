"""Plain functions the middleware tests declare as tasks (importable by a process pool's child)."""

from __future__ import annotations

import offload


def whoami(x: int) -> tuple[int, str, int, str | None]:
    """The job's own view of itself: what ``offload.current()`` says inside the task."""
    job = offload.current()
    return x * 2, job.id, job.attempt, job.meta.get("trace")


async def whoami_async(x: int) -> tuple[int, str, int, str | None]:
    job = offload.current()
    return x * 2, job.id, job.attempt, job.meta.get("trace")


def flaky() -> str:
    """Fails on its first attempt, succeeds on the second."""
    if offload.current().attempt == 1:
        raise ValueError("first attempt fails")
    return "second time lucky"


def fails() -> None:
    raise ValueError("always")
