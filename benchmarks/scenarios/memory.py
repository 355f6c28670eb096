"""Memory kept by calls whose handles are dropped at once.

``work(i)`` 250,000 times without keeping the handle, wait for the pool
to drain, collect garbage, and see what stayed. Two passes, each on a fresh
pool after its own warm-up, because tracemalloc slows every allocation
about threefold and so changes how far submission runs ahead of the pool:

1. untraced: the process's resident set (VmRSS) after minus before, and its
   peak (VmHWM) above the baseline: the backlog of queued calls;
2. traced: tracemalloc's count of the Python memory the calls left alive.

A system that keeps a reference to every call grows by the size of a
finished future per call in both.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.spec import Figures, Metric, Params, Scenario
from benchmarks.systems import IN_PROCESS, Bound, bind, versions

MIB = 1024 * 1024


def noop(x: Any) -> None:
    """The task: nothing; its result (None) is shared, so it costs no memory."""


def status_bytes(field: str) -> int:
    """A size from /proc/self/status (Linux): ``VmRSS`` now, ``VmHWM`` its peak."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"no {field} line in /proc/self/status: Linux only")


def reset_peak_rss() -> None:
    """Make VmHWM start again from the current RSS, so the peak is this pass's."""
    # Linux >= 4.0; where it is refused, VmHWM is the process's lifetime peak,
    # which after a small warm-up is still the pass's peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def run(system: str, params: Params) -> Figures:
    """Bytes per call left after the drain (RSS and tracemalloc), and peak RSS."""
    calls = int(params["calls"])
    with _warm_pool(system, params) as bound:
        rss_growth, peak_growth = _rss_pass(bound, calls, float(params["wait_timeout"]))
    with _warm_pool(system, params) as bound:
        retained = _traced_pass(bound, calls, float(params["wait_timeout"]))
    return {
        "retained_b_per_call": retained / calls,
        "rss_b_per_call": rss_growth / calls,
        "peak_rss_mib": peak_growth / MIB,
    }


@contextlib.contextmanager
def _warm_pool(system: str, params: Params) -> Iterator[Bound]:
    # Warm-up with handles kept and awaited: threads, caches and free lists
    # are in place before the baseline, so they don't count as growth.
    bound = bind(system, noop)
    try:
        warm = [bound.call(i) for i in range(int(params["warmup"]))]
        concurrent.futures.wait(warm, float(params["wait_timeout"]))
        del warm
        gc.collect()
        yield bound
    finally:
        bound.close()


def _rss_pass(bound: Bound, calls: int, timeout: float) -> tuple[int, int]:
    before = status_bytes("VmRSS")
    reset_peak_rss()
    _fire_and_forget(bound, calls, timeout)
    return status_bytes("VmRSS") - before, status_bytes("VmHWM") - before


def _traced_pass(bound: Bound, calls: int, timeout: float) -> int:
    # Started here, tracemalloc sees only blocks allocated from now on: its
    # "current" at the end is exactly what the calls left behind.
    tracemalloc.start()
    try:
        _fire_and_forget(bound, calls, timeout)
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def _fire_and_forget(bound: Bound, calls: int, timeout: float) -> None:
    call = bound.call
    for i in range(calls):
        call(i)  # the handle is dropped at once
    bound.finish(timeout)
    gc.collect()


SCENARIO = Scenario(
    name="memory",
    title="Memory kept by calls whose handles are dropped",
    metrics=(
        Metric("retained_b_per_call", "retained after drain (tracemalloc)", "B/call", floor=8.0),
        Metric("rss_b_per_call", "RSS growth after drain (VmRSS)", "B/call", floor=8.0),
        Metric(
            "peak_rss_mib", "peak RSS above baseline while submitting (VmHWM)", "MiB", floor=1.0
        ),
    ),
    systems=IN_PROCESS,
    tags=("in-process",),
    # 250,000 rather than a million: the per-call figures are the same (a
    # million: background 1,609 B/call retained, 1,726 of RSS; 250,000: 1,609
    # and 1,728; offload and ThreadPoolExecutor below 8 B/call at both) in a
    # quarter of the time (4.5 minutes per round at a million, with background
    # keeping 1.7 GB), which the scale scenario needs for the run to stay
    # under 30 minutes. The peak, a total, is a quarter of a million's for
    # background (438 MiB against 1,756), which keeps every call.
    full={"calls": 250_000, "warmup": 10_000, "wait_timeout": 300.0},
    # 20,000: two passes of each, three rounds, in about 15 s, for --quick to
    # stay under 3 minutes with arq and the scale scenario in it (background
    # still shows its ~1,600 B/call; the others stay below the floors).
    quick={"calls": 20_000, "warmup": 2_000, "wait_timeout": 60.0},
    run=run,
    versions=versions,
    timeout=900.0,
)
