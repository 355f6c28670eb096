"""The scenarios, in the order they run and appear in the table.

To add one: a module here with a ``SCENARIO`` (see ``benchmarks.spec``),
and its name in ``SCENARIOS``.
"""

from __future__ import annotations

from benchmarks.scenarios import memory, overhead, seed
from benchmarks.spec import Scenario

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario for scenario in (overhead.SCENARIO, seed.SCENARIO, memory.SCENARIO)
}

__all__ = ["SCENARIOS"]
