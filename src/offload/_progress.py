"""A live progress bar of completions, on a terminal only."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any


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
