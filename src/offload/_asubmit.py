"""``await task.aio(...)``: a call from a coroutine that never blocks the event loop.

Imported by ``Task.aio`` when first used, so ``import offload`` pays nothing
for it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._handle import Handle

if TYPE_CHECKING:
    from ._task import CallOptions, Submitter, Task


async def submit_async(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
) -> Handle[Any]:
    """Send one call of ``task``: in-process at once, to a durable broker from a thread."""
    app = task._app()
    if not app.durable:  # in-process: a lock and an append, never I/O
        if task.spec.pool == "process" and not task._import_checked:
            task._check_importable()
        return app.submit(task.spec, args, kwargs, options)
    # One path for every broker: the blocking enqueue, in a thread. A native
    # async client per broker would be a second copy of each enqueue (its
    # scripts, transactions and middleware) for the cost of one thread hop,
    # small beside the round trip it overlaps.
    return await asyncio.to_thread(_submit_checked, task, app, args, kwargs, options)


def _submit_checked(
    task: Task[Any, Any],
    app: Submitter,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: CallOptions,
) -> Handle[Any]:
    if not task._import_checked:
        task._check_importable()
    return app.submit(task.spec, args, kwargs, options)
