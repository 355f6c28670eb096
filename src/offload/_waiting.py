"""Waiting on many handles at once: thin, typed faces of the standard library's."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Iterator
from typing import Any, Literal, TypeVar

from ._handle import Handle

R = TypeVar("R")

ReturnWhen = Literal["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION"]


def wait(
    handles: Iterable[Handle[R]],
    timeout: float | None = None,
    return_when: ReturnWhen = "ALL_COMPLETED",
) -> tuple[set[Handle[R]], set[Handle[R]]]:
    """Wait until all (or the first, or the first failing) handles finish.

    Returns ``(done, not_done)``, as ``concurrent.futures.wait`` does.
    """
    done, not_done = concurrent.futures.wait(list(handles), timeout, return_when)
    return done, not_done  # type: ignore[return-value]  # the same objects we passed in


def as_completed(handles: Iterable[Handle[R]], timeout: float | None = None) -> Iterator[Handle[R]]:
    """Yield handles as they finish, fastest first."""
    # The stdlib yields the very objects passed in: our handles.
    yield from concurrent.futures.as_completed(list(handles), timeout)  # type: ignore[misc]


async def gather(*handles: Handle[Any], return_exceptions: bool = False) -> list[Any]:
    """``await offload.gather(h1, h2)``: the results in order, without blocking the loop."""
    import asyncio  # only for callers already in asyncio

    return await asyncio.gather(
        *(asyncio.wrap_future(handle) for handle in handles),
        return_exceptions=return_exceptions,
    )
