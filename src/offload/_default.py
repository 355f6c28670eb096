"""The default app, and ``offload.task``/``offload.shutdown`` that use it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, overload

from ._app import App
from ._runner import TaskSpec
from ._task import (
    P,
    R,
    Task,
    TaskDecorator,
    TaskOptions,
    Unpack,
    declare,
    document_options,
)

# Tasks declared with @offload.task, whichever default app serves them: the
# registry outlives an app that was shut down and made again.
_registry: dict[str, TaskSpec] = {}
_default: App | None = None
_lock = threading.Lock()


def default_app() -> App:
    """The app ``@offload.task`` uses, created on first use.

    In-process, unless ``OFFLOAD_URL`` is set in the environment: then its
    broker (``OFFLOAD_URL=sqlite:///jobs.db``), so unchanged task code
    becomes durable. ``OFFLOAD_INCLUDE`` (comma-separated module names) is
    its ``include=``.
    """
    global _default  # noqa: PLW0603 - one lazily created default, like logging's root
    app = _default
    if app is None:
        with _lock:
            if _default is None:
                _default = App(
                    os.environ.get("OFFLOAD_URL") or None,
                    registry=_registry,
                    include=_included(os.environ.get("OFFLOAD_INCLUDE", "")),
                )
            app = _default
    return app


def _included(names: str) -> list[str]:
    """``OFFLOAD_INCLUDE=myproject.jobs,myproject.models``: the default app's ``include``."""
    return [name.strip() for name in names.split(",") if name.strip()]


def _register(spec: TaskSpec) -> None:
    _registry[spec.name] = spec


@overload
def task(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(**options: Unpack[TaskOptions]) -> TaskDecorator: ...


@document_options
def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make ``fn`` a task of the default app: calling it runs it in the background.

    >>> @offload.task
    ... def work(x: int) -> int:
    ...     return x * x
    >>> work(3).result()
    9

    The app is looked up at each call, not at import, so import order never
    matters.
    """
    return declare(fn, options, default_app, _register)


def shutdown(wait: bool = True, *, cancel_pending: bool = False) -> None:
    """Stop the default app (see ``App.shutdown``); the next call starts a new one."""
    global _default
    with _lock:
        app, _default = _default, None
    if app is not None:
        app.shutdown(wait, cancel_pending=cancel_pending)
