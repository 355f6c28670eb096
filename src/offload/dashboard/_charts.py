"""The overview's charts: throughput and failure rate over the last hour, drawn as SVG.

The numbers come from the broker (``History``), so a restarted dashboard
draws the same hour. The SVG is made here, as points for a ``polyline``:
no chart library, no script, nothing for the Content-Security-Policy to
allow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .._brokers._base import History, Inspector

MINUTES = 60
WIDTH = 560
HEIGHT = 120


@dataclass
class Chart:
    """One chart: a title, its largest value, and lines of SVG points."""

    title: str
    top: str
    lines: list[tuple[str, str]]  # (css class, "x,y x,y ...")
    total: str
    width: int = WIDTH
    height: int = HEIGHT


def history(inspector: Inspector, now: float | None = None) -> list[Chart] | None:
    """The two charts of the last hour; ``None`` when the broker keeps no history."""
    if not isinstance(inspector, History):
        return None
    now = time.time() if now is None else now
    start = (now // 60 - (MINUTES - 1)) * 60
    succeeded = [0] * MINUTES
    failed = [0] * MINUTES
    for row in inspector.throughput(start):
        index = int((row.minute - start) // 60)
        if 0 <= index < MINUTES:
            succeeded[index] += row.succeeded
            failed[index] += row.failed
    rates = [100.0 * f / (s + f) if s + f else 0.0 for s, f in zip(succeeded, failed, strict=True)]
    done, lost = sum(succeeded), sum(failed)
    overall = f"{100.0 * lost / (done + lost):.1f}% overall" if done + lost else "no jobs"
    peak = max([*succeeded, *failed, 1])
    return [
        Chart(
            "Finished per minute, last hour",
            str(peak),
            [("ok", _points(succeeded, peak)), ("bad", _points(failed, peak))],
            f"{done} succeeded, {lost} failed",
        ),
        Chart("Failure rate, last hour", "100%", [("bad", _points(rates, 100.0))], overall),
    ]


def charts_json(inspector: Inspector) -> list[dict[str, object]]:
    """The charts' lines and totals, for the page's live updates (empty: no history)."""
    return [
        {"total": chart.total, "top": chart.top, "lines": [points for _, points in chart.lines]}
        for chart in history(inspector) or []
    ]


def _points(values: list[int] | list[float], top: float) -> str:
    step = WIDTH / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{HEIGHT - (value / top) * (HEIGHT - 4) - 2:.1f}"
        for i, value in enumerate(values)
    )
