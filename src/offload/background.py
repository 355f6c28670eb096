"""A drop-in for Kenneth Reitz's ``background`` package.

``import offload.background as bg`` replaces ``import background as bg``::

    @bg.task
    def work():
        time.sleep(1)
        return 1

    bg.n = 110                      # resizes the pool, at once
    futures = [work() for _ in range(100)]

The same five names (``task``, ``callback``, ``run``, ``n``,
``default_n``), without the original's bugs: no list that keeps every
result alive, ``functools.wraps`` kept, no private attributes of the
standard library, and no pool built at import (it starts on first use).
"""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ._app import App
from ._handle import Handle
from ._task import P, R, Task

F = TypeVar("F", bound=Callable[..., Any])

_callbacks: list[Callable[[Future[Any]], object]] = []
_lock = threading.Lock()
_n: int
n: int
"""The pool size; assigning it (``bg.n = 110``) resizes the pool at once."""


def default_n() -> int:
    """The default pool size: the number of CPUs, as ``background`` had it."""
    return os.cpu_count() or 1


_app = App(threads=default_n(), name="offload-background")


def task(fn: Callable[P, R]) -> Task[P, R]:
    """Run ``fn`` in the background when called; the call returns a future.

    The callbacks registered with ``@callback`` are called with the future
    when it finishes.
    """
    made: Task[P, R] = _app.task(fn)
    return _WithCallbacks(made)


def run(fn: Callable[..., R], *args: Any, **kwargs: Any) -> Handle[R]:
    """Run ``fn(*args, **kwargs)`` in the background now; returns its future."""
    return task(fn)(*args, **kwargs)


def callback(fn: F) -> F:
    """Call ``fn(future)`` whenever a background task finishes."""
    with _lock:
        _callbacks.append(fn)
    return fn


class _WithCallbacks(Task[P, R]):
    """A task whose calls get the module's registered callbacks."""

    def __init__(self, inner: Task[P, R]) -> None:
        super().__init__(inner.fn, inner.spec, lambda: _app)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        handle = super().__call__(*args, **kwargs)
        for cb in list(_callbacks):
            handle.add_done_callback(cb)
        return handle


class _Module(types.ModuleType):
    """Makes ``bg.n = 110`` resize the pool, as it did in ``background``."""

    @property
    def n(self) -> int:
        return _n

    @n.setter
    def n(self, value: int) -> None:
        global _n  # noqa: PLW0603 - the module attribute users assign
        _app.resize("thread", value)  # validates: a positive integer
        _n = value


_n = default_n()
sys.modules[__name__].__class__ = _Module

__all__ = ["callback", "default_n", "n", "run", "task"]
