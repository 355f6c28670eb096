"""What the durable scenarios share: a driver on a clean store, worker processes.

Each durable scenario exists once per backend (``enqueue-sqlite``,
``enqueue-redis``, ...), so that offload's ratio is always taken against
the peers on the same store, in a table of that backend's own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import peers, workers
from benchmarks.peers import servers
from benchmarks.peers.base import Driver
from benchmarks.spec import Figures, Metric, Params, Scenario

ROOT = Path(__file__).resolve().parents[2]
# Per system and backend: (driver, params) -> figures.
DurableRunner = Callable[[servers.Backend, str, Params], Figures]


@contextlib.contextmanager
def driver_for(backend: servers.Backend, system: str) -> Iterator[Driver]:
    """``system``'s driver on a clean store, closed (and its temp dir removed) after."""
    with tempfile.TemporaryDirectory(prefix="offload-bench-") as tmp:
        driver = peers.load(backend, system, Path(tmp))
        try:
            yield driver
        finally:
            driver.close()


def worker_processes(
    driver: Driver, processes: int
) -> contextlib.AbstractContextManager[workers.Workers]:
    """``driver``'s worker command(s) for ``processes`` worker processes, running."""
    # The workers import the driver module from the repository, like the child,
    # and the child's own PYTHONPATH after it (the harness sets none): an A/B run
    # of an older offload (PYTHONPATH=/tmp/rev/src) then measures its workers too.
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return workers.running(driver.worker_commands(processes), env, ROOT)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms; ``TimeoutError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


def per_backend(
    kind: str,
    title: str,
    metrics: tuple[Metric, ...],
    run: DurableRunner,
    *,
    full: Params,
    quick: Params,
    timeout: float,
    quick_timeout: float,
    skip: frozenset[str] = frozenset(),
    notes: dict[str, str] | None = None,
) -> list[Scenario]:
    """The scenario ``kind`` once per backend, for the systems that can do it."""
    scenarios = []
    for backend in servers.BACKENDS:
        label = servers.LABELS[backend]
        note = (notes or {}).get(backend)
        scenarios.append(
            Scenario(
                name=f"{kind}-{backend}",
                title=f"{title}, {label}" + (f" ({note})" if note else ""),
                metrics=metrics,
                systems=tuple(s for s in peers.systems(backend) if s not in skip),
                full=full,
                quick=quick,
                run=functools.partial(run, backend),
                timeout=timeout,
                quick_timeout=quick_timeout,
                versions=functools.partial(peers.versions, backend),
                table=label,
                tags=("durable", kind, backend),
            )
        )
    return scenarios
