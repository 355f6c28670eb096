"""Live progress bars, on a terminal only: of many calls' completions, or of one call's
reported progress."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from ._message import Progress


def track(futures: Sequence[Future[Any]], description: str) -> None:
    """Show a bar that advances as ``futures`` finish; silent unless stderr is a terminal."""
    if not futures or not sys.stderr.isatty():
        return
    from tqdm import tqdm  # imported here: `import offload` must stay fast

    bar = tqdm(total=len(futures), desc=description, unit="task", file=sys.stderr)
    remaining = [len(futures)]
    lock = threading.Lock()

    def advance(_: Future[Any]) -> None:
        with lock:
            bar.update(1)
            remaining[0] -= 1
            if remaining[0] == 0:
                bar.close()

    for future in futures:
        future.add_done_callback(advance)


class _Followed(Protocol):
    @property
    def progress(self) -> Progress | None: ...

    def done(self) -> bool: ...


def follow(handle: _Followed, description: str, timeout: float | None, poll: float) -> bool:
    """Wait up to ``timeout`` for ``handle``, drawing the progress its job reports on a bar
    (a terminal only: else it just waits); whether it is done."""
    deadline = None if timeout is None else time.monotonic() + timeout
    bar: Any = None
    try:
        while not handle.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if sys.stderr.isatty():
                bar = _draw(bar, handle.progress, description)
            _wait_done(handle, poll if left is None else min(poll, left))
        if bar is not None:
            bar = _draw(bar, handle.progress, description)
        return True
    finally:
        if bar is not None:
            bar.close()


def _wait_done(handle: _Followed, seconds: float) -> None:
    from concurrent.futures import wait

    if isinstance(handle, Future):
        wait([handle], timeout=seconds)
    else:
        time.sleep(seconds)


def _draw(bar: Any, progress: Progress | None, description: str) -> Any:
    if progress is None and bar is not None:
        return bar
    if bar is None:
        from tqdm import tqdm  # imported here: `import offload` must stay fast

        bar = tqdm(desc=description, file=sys.stderr, total=None)
    if progress is not None:
        if progress.total is not None and bar.total != progress.total:
            bar.total = progress.total
        bar.n = progress.done
        if progress.note:
            bar.set_postfix_str(progress.note, refresh=False)
        bar.refresh()
    return bar
