"""``Signature[R]``: a task with its arguments, not run yet (``task.s(...)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # _task sits above: the types are all this needs of it
    from ._handle import Handle
    from ._task import CallOptions, Task

R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class Signature(Generic[R]):
    """A task with its arguments and options, not run yet: a workflow's building block.

    Made by ``task.s(*args)`` or ``task.options(...).s(*args)``; composed
    with ``offload.chain``, ``offload.group`` and ``offload.chord``.
    ``sig.delay()`` runs it alone and returns its ``Handle[R]``.
    """

    task: Task[..., R]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: CallOptions

    def delay(self) -> Handle[R]:
        """Run this call now (as ``task(*args, **kwargs)``); its handle."""
        return self.task.with_options(self.options)(*self.args, **self.kwargs)

    __call__ = delay

    def __repr__(self) -> str:
        shown = [repr(arg) for arg in self.args]
        shown += [f"{name}={value!r}" for name, value in self.kwargs.items()]
        return f"{self.task.name}.s({', '.join(shown)})"
