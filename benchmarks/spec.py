"""What a scenario declares: its figures, its sizes, and the code a child runs.

A scenario is data plus one function. The harness never needs to know what a
scenario does: it starts a child per (system, round), hands it the
parameters, and gets back one number per figure. Adding a scenario means one
module in ``benchmarks/scenarios/`` and one line in its ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Better = Literal["lower", "higher"]
Params = Mapping[str, Any]
Figures = dict[str, float]
# Runs inside the child process: (system name, parameters) -> one value per figure.
Runner = Callable[[str, Params], Figures]
# Runs inside the child process: system name -> {distribution: version}.
Versions = Callable[[str], dict[str, str]]


# Computes figures from the run's parameters and one round's figures of one
# system (e.g. a ratio of two parts' figures).
Derive = Callable[[Params, Figures], Figures]


def _no_versions(system: str) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Part:
    """One child of a system's round: a scenario with parts runs one child per part.

    Each child gets the scenario's parameters updated with the part's (e.g. a
    queue depth), so each starts on a clean store and in a fresh process;
    the round's figures for the system are those of all its parts together.
    """

    name: str
    params: Params
    # Only these systems run it (None: every one); the others' cells say n/a.
    systems: frozenset[str] | None = None
    # It runs in the first ``rounds`` rounds only (None: in every round).
    rounds: int | None = None

    def runs(self, system: str, round_number: int) -> bool:
        """Whether ``system`` runs this part in round ``round_number`` (from 1)."""
        if self.systems is not None and system not in self.systems:
            return False
        return self.rounds is None or round_number <= self.rounds


def _one_part(params: Params) -> tuple[Part, ...]:
    return (Part("", {}),)


@dataclass(frozen=True)
class Metric:
    """One figure a scenario reports, and which way is better."""

    key: str
    label: str
    unit: str
    better: Better = "lower"
    # Below this magnitude a value means "nothing" (for memory: less than one
    # pointer per call), so no ratio is taken against it.
    floor: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A measurement every listed system runs in its own child process."""

    name: str
    title: str
    metrics: tuple[Metric, ...]
    systems: tuple[str, ...]
    full: Params
    quick: Params
    run: Runner
    # Seconds one child may take before its process group is killed.
    timeout: float
    quick_timeout: float = 60.0
    versions: Versions = _no_versions
    # The table the rows go in: scenarios that compare the same systems
    # (in-process, or one broker backend) share one.
    table: str = "In-process"
    # Names ``--only`` also accepts for this scenario (e.g. "durable", "sqlite").
    tags: tuple[str, ...] = ()
    # The children of one system's round, from the run's parameters (one by default).
    parts: Callable[[Params], tuple[Part, ...]] = _one_part
    # Figures computed by the harness from each round's figures of a system.
    derive: Derive | None = None
    # The figures of a ``--quick`` run, if its sizes make them other rows.
    quick_metrics: tuple[Metric, ...] | None = None

    def params(self, quick: bool) -> Params:
        """The parameters for a full or a ``--quick`` run."""
        return self.quick if quick else self.full

    def child_timeout(self, quick: bool) -> float:
        """How long one child of a full or a ``--quick`` run may take."""
        return self.quick_timeout if quick else self.timeout

    def metrics_for(self, quick: bool) -> tuple[Metric, ...]:
        """The figures of a full or a ``--quick`` run."""
        return self.quick_metrics if quick and self.quick_metrics is not None else self.metrics

    def metric(self, key: str) -> Metric:
        """The declared figure called ``key``."""
        for metric in self.metrics:
            if metric.key == key:
                return metric
        raise KeyError(f"scenario {self.name!r} has no figure {key!r}")
