"""The systems under test, each driven through its normal public API.

Every library is imported inside the function that drives it, never at the
top: ``background`` builds its thread pool at import, and a child process
measuring one system must not pay for (or be disturbed by) another.

Broker-based peers (Celery, RQ, Huey, arq, ...) have drivers of their own
in ``benchmarks/peers/``: they need servers and worker processes, not a
function binding. Which venv runs a system is said here too (``VENVS``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.metadata
import platform
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

OFFLOAD = "offload"
TPE = "ThreadPoolExecutor"
BACKGROUND = "background"
IN_PROCESS = (OFFLOAD, TPE, BACKGROUND)


@dataclass(frozen=True)
class System:
    """A system under test: its name in tables and what it is, exactly."""

    name: str
    # The distribution whose installed version is recorded (None: the stdlib).
    distribution: str | None
    how: str


# The systems whose children and workers run in a venv of their own (see
# harness.VENVS); every other one runs in the peers' venv, with offload.
# arq 0.28 requires redis<6, Celery 5.7's kombu redis>=6.4.
VENVS: dict[str, str] = {"arq": "arq"}
DEFAULT_VENV = "peers"


def venv_of(system: str) -> str:
    """The name of the venv whose python runs ``system``'s children and workers."""
    return VENVS.get(system, DEFAULT_VENV)


SYSTEMS: dict[str, System] = {
    OFFLOAD: System(OFFLOAD, "offload", "@offload.task on the default in-process app"),
    TPE: System(TPE, None, "concurrent.futures.ThreadPoolExecutor().submit(fn, x)"),
    BACKGROUND: System(BACKGROUND, "background", "import background as bg; @bg.task"),
}


@dataclass(frozen=True)
class Bound:
    """A function bound to a system: start calls of it, then wait for them all."""

    # Starts fn(x) in the background and returns its future at once.
    call: Callable[[Any], Future[Any]]
    # Waits (at most the given seconds) until every call made so far has
    # finished; it may stop the pool, so it comes last.
    finish: Callable[[float], None]
    close: Callable[[], None]


def bind(system: str, fn: Callable[[Any], Any], workers: int | None = None) -> Bound:
    """Bind ``fn`` to ``system``, with its default pool size unless ``workers``."""
    binders: dict[str, Callable[[Callable[[Any], Any], int | None], Bound]] = {
        OFFLOAD: _bind_offload,
        TPE: _bind_thread_pool,
        BACKGROUND: _bind_background,
    }
    if system not in binders:
        raise ValueError(f"unknown system {system!r}; known: {', '.join(binders)}")
    return binders[system](fn, workers)


def versions(system: str) -> dict[str, str]:
    """The installed version of what ``system`` measures (Python for the stdlib)."""
    dist = SYSTEMS[system].distribution
    if dist is None:
        return {"python": platform.python_version()}
    return {dist: importlib.metadata.version(dist)}


def _bind_offload(fn: Callable[[Any], Any], workers: int | None) -> Bound:
    import offload

    if workers is None:
        # The default app, exactly as `@offload.task` users get it.
        app = offload.default_app()
        task = offload.task(fn)
        close: Callable[[], None] = offload.shutdown
    else:
        app = offload.App(threads=workers)
        task = app.task(fn)
        close = app.shutdown

    def finish(timeout: float) -> None:
        if not app.join(timeout):
            raise TimeoutError(f"offload: calls still pending after {timeout} s")

    return Bound(task, finish, close)


def _bind_thread_pool(fn: Callable[[Any], Any], workers: int | None) -> Bound:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    # partial (C code) rather than a lambda, so the binding adds next to nothing.
    # mypy's partial plugin miscounts submit's ParamSpec arguments: fn is enough.
    call = functools.partial(pool.submit, fn)  # type: ignore[call-arg]
    return Bound(call, lambda timeout: _bounded(pool.shutdown, timeout), pool.shutdown)


def _bind_background(fn: Callable[[Any], Any], workers: int | None) -> Bound:
    import background as bg  # type: ignore[import-not-found, unused-ignore]

    if workers is not None:
        bg.n = workers
    call: Callable[[Any], Future[Any]] = bg.task(fn)

    def finish(timeout: float) -> None:
        # `background` keeps every future in bg.results: the only way to
        # reach futures whose handles the caller dropped.
        _wait_all(list(bg.results), timeout)

    return Bound(call, finish, lambda: None)


def _wait_all(futures: Iterable[Future[Any]], timeout: float) -> None:
    _, not_done = concurrent.futures.wait(futures, timeout)
    if not_done:
        raise TimeoutError(f"{len(not_done)} calls still pending after {timeout} s")


def _bounded(fn: Callable[[], object], timeout: float) -> None:
    """Run a wait that has no timeout of its own (e.g. shutdown) with one."""
    thread = threading.Thread(target=fn, name="bench-bounded-wait", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} did not return within {timeout} s")
