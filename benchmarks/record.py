"""What a run found: samples per system and figure, and their summaries.

Plain dataclasses, so a run is written to JSON as it is (``asdict``) and the
Markdown renderer reads the same objects the harness filled.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.spec import Metric


@dataclass(frozen=True)
class Summary:
    """The median of the rounds, and their spread."""

    median: float
    low: float
    high: float
    rounds: int


def summarize(values: Sequence[float]) -> Summary:
    """Median, min and max of one figure's rounds (at least one)."""
    if not values:
        raise ValueError("no samples to summarize")
    return Summary(statistics.median(values), min(values), max(values), len(values))


@dataclass
class ScenarioResult:
    """One scenario's rounds for every system."""

    name: str
    title: str
    params: dict[str, Any]
    systems: list[str]
    metrics: list[Metric]
    # system -> figure key -> one value per round that succeeded, in round order
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    # The Markdown table the scenario's rows go in (see Scenario.table).
    table: str = "In-process"

    def add(self, system: str, figures: dict[str, float]) -> None:
        """Record one round's figures for ``system``."""
        per_metric = self.samples.setdefault(system, {})
        for key, value in figures.items():
            per_metric.setdefault(key, []).append(float(value))

    def fail(self, system: str, message: str) -> None:
        """Record that one round of ``system`` produced no figures."""
        self.errors.setdefault(system, []).append(message)

    def summary(self, system: str, key: str) -> Summary | None:
        """The summary of one figure, or None if no round produced it."""
        values = self.samples.get(system, {}).get(key)
        return summarize(values) if values else None


@dataclass
class RunRecord:
    """A whole run: how it was made, where, and every scenario's result."""

    started: str
    mode: str  # "full" or "quick"
    rounds: int
    command: str
    machine: dict[str, Any]
    scenarios: list[ScenarioResult] = field(default_factory=list)
    finished: str = ""

    @property
    def failed(self) -> bool:
        """Whether any child failed (its cells are missing from the table)."""
        return any(result.errors for result in self.scenarios)
