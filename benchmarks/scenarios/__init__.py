"""The scenarios, in the order they run and appear in the tables.

To add one: a module here with a ``SCENARIO`` (or, for a durable one, a
``SCENARIOS`` list: one per backend; see ``benchmarks.spec``), and its
entry below.
"""

from __future__ import annotations

from benchmarks.scenarios import (
    drain,
    enqueue,
    memory,
    overhead,
    roundtrip,
    scale,
    seed,
    seed_cell,
    sqlite_full,
)
from benchmarks.spec import Scenario

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        overhead.SCENARIO,
        seed.SCENARIO,
        seed_cell.SCENARIO,
        memory.SCENARIO,
        *enqueue.SCENARIOS,
        *drain.SCENARIOS,
        *roundtrip.SCENARIOS,
        *scale.SCENARIOS,
        sqlite_full.SCENARIO,
    )
}


def select(only: str | None) -> list[str]:
    """The scenarios ``--only`` names: comma-separated names or tags, in run order.

    Tags: ``in-process``, ``durable``, a kind (``enqueue``, ``drain``,
    ``roundtrip``, ``scale``) or a backend (``sqlite``, ``redis``, ``postgres``). A
    name with a colon is both: ``drain:sqlite`` is ``drain-sqlite``.
    """
    if not only:
        return list(SCENARIOS)
    wanted = [word.strip() for word in only.split(",") if word.strip()]
    chosen: list[str] = []
    for word in wanted:
        parts = word.split(":")
        matches = [
            name
            for name, scenario in SCENARIOS.items()
            if name == word or all(part in (name, *scenario.tags) for part in parts)
        ]
        if not matches:
            raise ValueError(f"--only {word!r} names no scenario; known: {known()}")
        chosen += [name for name in matches if name not in chosen]
    return [name for name in SCENARIOS if name in chosen]


def known() -> str:
    """Every name and tag ``--only`` accepts."""
    tags = {tag for scenario in SCENARIOS.values() for tag in scenario.tags}
    return ", ".join([*SCENARIOS, *sorted(tags)])


__all__ = ["SCENARIOS", "select"]
