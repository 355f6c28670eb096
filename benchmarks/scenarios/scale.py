"""Scale: the drain rate with 10k, 100k and 1M tasks queued, and the workers' peak RSS.

Each depth is a part (see ``spec.Part``): a child of its own on a clean
store. It queues N no-op tasks first (untimed, the batch API where there is
one; offload's producer listens for their ends from the second task on, at
every depth alike: see ``fill_marked``), then starts exactly 2 worker
processes, as the drain scenario does,
and measures the rate over a window of a fixed number of tasks rather than
draining all N (a million at a few thousand a second is minutes per round).
The window opens once ``lead`` tasks are done (the workers' start-up is
behind it) and closes ``window`` tasks later, timed one of two ways:

- by the library's done count (the drain scenario's stopping condition),
  polled every 20 ms: (d1 - d0) / (t1 - t0) between the first poll that
  counts ``lead`` done and the first that counts ``window`` more;
- where that count scans the whole table (offload on SQLite and
  PostgreSQL, Procrastinate: hundreds of ms with a million rows, which
  would load the store the workers use), by two marked tasks, queued at
  positions ``lead`` and ``lead + window``, each polled by key: ``window``
  / (t1 - t0). The queues are first in, first out.

Then the largest peak RSS (VmHWM) of any process in the workers' process
groups, before they are stopped by group (the queue's remaining tasks go
with the store, which the next child starts clean).

The harness derives each deeper rate as a percentage of the shallowest's,
per round: the target is that a million queued costs a worker nothing
(>= 90% of the 10k rate), with flat RSS rows.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

from benchmarks.peers import servers
from benchmarks.peers.base import Driver
from benchmarks.scenarios.durable import driver_for, per_backend, wait_until, worker_processes
from benchmarks.spec import Figures, Metric, Params, Part
from benchmarks.workers import Workers

MIB = 1024 * 1024

# The peers measured, per backend, and the deepest queue each is given:
# filling 1M one call at a time would take them minutes (Huey 4,000-9,000
# tasks/s here, Dramatiq ~5,000; Procrastinate's batch ~13,000), so they stop
# at 100k, where their fill takes 8-27 s. RQ, Celery and arq are left out:
# their drain is below 1,000 tasks/s here (a fork per job; ~700/s; a 0.5 s
# poll), bounded by that per-task cost rather than by the queue, and a window
# long enough to measure it costs 10 s or more per child (their drain rows
# are in the drain scenario). See the README for the measured fill times.
PEER_DEPTHS: dict[str, dict[str, int]] = {
    "sqlite": {"Huey": 100_000},
    "redis": {"Huey": 100_000, "Dramatiq": 100_000},
    "postgres": {"Procrastinate": 100_000},
}


def label(depth: int) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    if depth >= 1_000_000 and depth % 1_000_000 == 0:
        return f"{depth // 1_000_000}M"
    if depth >= 1_000 and depth % 1_000 == 0:
        return f"{depth // 1_000}k"
    return str(depth)


def run(backend: servers.Backend, system: str, params: Params) -> Figures:
    """One depth: the rate over the window, and the workers' peak RSS."""
    depth, timeout = int(params["depth"]), float(params["wait_timeout"])
    try:
        return _measure(backend, system, params, depth, timeout)
    finally:
        # The rest of the queue (up to a million tasks, hundreds of MB in Redis
        # or PostgreSQL) is not left on the servers until the next run.
        servers.empty(backend)


def _measure(
    backend: servers.Backend, system: str, params: Params, depth: int, timeout: float
) -> Figures:
    with driver_for(backend, system) as driver:
        share = driver.drain_share if driver.window_share is None else driver.window_share
        lead, window = (max(1, round(int(params[key]) * share)) for key in ("lead", "window"))
        if lead + window >= depth:
            raise ValueError(f"a window of {lead} + {window} tasks needs more than {depth} queued")
        started = time.perf_counter()
        # Every depth's window drained with the same news to send (see fill_marked).
        marks = driver.fill_marked(depth, (lead, lead + window), listening=True)
        fill_s = time.perf_counter() - started
        if driver.done_count() != 0:
            raise RuntimeError(f"{system}: tasks done before any worker started")
        with worker_processes(driver, int(params["processes"])) as running:
            what = f"{system}: {lead} + {window} tasks of {depth} queued"
            if marks:
                rate = _window_by_marks(driver, running, marks, window, timeout=timeout, what=what)
            else:
                rate = _window_by_count(driver, running, lead, window, timeout=timeout, what=what)
            peak = running.peak_rss()
    name = label(depth)
    return {f"drain_{name}": rate, f"rss_{name}": peak / MIB, f"fill_{name}_s": fill_s}


def _window_by_count(
    driver: Driver, running: Workers, lead: int, window: int, *, timeout: float, what: str
) -> float:
    """Tasks/s from the first poll counting ``lead`` done to the first counting ``window`` more."""
    marks: list[tuple[float, int]] = []  # (when, done) as the window opens, and as it closes

    def window_done() -> bool:
        done = driver.done_count()
        now = time.perf_counter()
        running.check()  # a crashed worker fails the round instead of stalling it
        if not marks:  # the window opens at this poll, and closes at a later one
            if done >= lead:
                marks.append((now, done))
            return False
        if done >= marks[0][1] + window:
            marks.append((now, done))
            return True
        return False

    wait_until(window_done, timeout, what)
    (start, first), (end, last) = marks[0], marks[-1]
    return (last - first) / (end - start)


def _window_by_marks(
    driver: Driver, running: Workers, marks: list[Any], window: int, *, timeout: float, what: str
) -> float:
    """Tasks/s from the first poll seeing the first mark's task done to the one seeing the second's.

    Queues are first in, first out: when the task queued ``window`` places
    after the first mark is done, ``window`` more are done, give or take the
    few the workers run at once.
    """
    times: list[float] = []
    for mark in marks:

        def mark_done(mark: Any = mark) -> bool:
            running.check()
            return driver.is_done(mark)

        wait_until(mark_done, timeout, what)
        times.append(time.perf_counter())
    return window / (times[1] - times[0])


def parts(backend: servers.Backend, params: Params) -> tuple[Part, ...]:
    """One part per depth and round schedule: who runs it, in which rounds.

    offload runs every depth in every round (at most ``max_rounds``, if
    given): its deepest queue is the target's row, and one round of it swung
    by tens of percent between runs. A peer runs the depths up to its limit in
    ``PEER_DEPTHS`` (none if ``peers`` is off), its deepest in the first
    ``peer_deepest_rounds`` rounds only (informative rows, and its fill, one
    call per task, is what takes the time).
    """
    depths = sorted(int(depth) for depth in params["depths"])
    cap = params.get("max_rounds")
    deepest_rounds = int(params["peer_deepest_rounds"])
    deepest_rounds = deepest_rounds if cap is None else min(cap, deepest_rounds)
    limits = {"offload": depths[-1]}
    if params["peers"]:
        limits.update(PEER_DEPTHS[backend])
    found = []
    for depth in depths:
        every = frozenset(s for s, limit in limits.items() if limit > depth or s == "offload")
        deepest = frozenset(s for s, limit in limits.items() if limit == depth and s != "offload")
        for systems, rounds in ((every, cap), (deepest, deepest_rounds)):
            if systems:
                found.append(Part(label(depth), {"depth": depth}, systems=systems, rounds=rounds))
    return tuple(found)


def derive(params: Params, figures: Figures) -> Figures:
    """Each deeper queue's rate over the shallowest's, in one round, as a percentage."""
    depths = sorted(int(depth) for depth in params["depths"])
    shallow = figures.get(f"drain_{label(depths[0])}")
    if not shallow:
        return {}
    return {
        f"ratio_{label(depth)}": 100 * figures[f"drain_{label(depth)}"] / shallow
        for depth in depths[1:]
        if f"drain_{label(depth)}" in figures  # a peer stops at its limit; 1M runs in round 1
    }


def metrics(depths: list[int]) -> tuple[Metric, ...]:
    """The rows for these depths: the rate at each, its ratio to the shallowest's, RSS."""
    depths = sorted(depths)
    shallow, deepest = depths[0], depths[-1]
    return (
        *(
            Metric(f"drain_{label(d)}", f"drain, {label(d)} queued", "tasks/s", better="higher")
            for d in depths
        ),
        *(
            Metric(
                f"ratio_{label(d)}",
                f"drain at {label(d)} ÷ drain at {label(shallow)} queued"
                + (" (target ≥ 90%)" if d == deepest else ""),
                "%",
                better="higher",
            )
            for d in depths[1:]
        ),
        *(
            Metric(f"rss_{label(d)}", f"peak RSS of the largest worker, {label(d)} queued", "MiB")
            for d in depths
        ),
    )


FULL: Params = {
    "depths": [10_000, 100_000, 1_000_000],
    # Tasks done before the window opens (the workers' start-up is behind
    # them), and the window: 8,000 tasks (fewer for a slow drainer).
    "lead": 200,
    "window": 8_000,
    # A peer's deepest queue (100k) in round 1 only: its fill, one call per
    # task, is what takes the time (8-27 s). offload's 1M runs in every round.
    "peer_deepest_rounds": 1,
    "peers": True,
    "processes": 2,
    "wait_timeout": 120.0,
}
QUICK: Params = {
    # offload only, one round: a check that the scenario works, in ~20 s.
    "depths": [2_000, 20_000],
    "lead": 100,
    "window": 1_500,
    "peer_deepest_rounds": 1,
    "max_rounds": 1,
    "peers": False,
    "processes": 2,
    "wait_timeout": 60.0,
}


SCENARIOS = [
    dataclasses.replace(
        scenario,
        parts=functools.partial(parts, backend),
        derive=derive,
        quick_metrics=metrics(QUICK["depths"]),
    )
    for backend, scenario in zip(
        servers.BACKENDS,
        per_backend(
            "scale",
            "Drain rate with a deep queue, 2 worker processes, over a window of tasks",
            metrics(FULL["depths"]),
            run,
            full=FULL,
            quick=QUICK,
            timeout=300.0,
            quick_timeout=90.0,
        ),
        strict=True,
    )
]
