"""SQLite with every commit synced (``synchronous=FULL``), as Huey runs by default.

offload's SQLite default is ``synchronous=NORMAL`` under WAL: safe against
a crashed or killed process, not against a power cut, where FULL is. The
``enqueue-sqlite`` and ``drain-sqlite`` rows compare offload's default with
Huey's; these rows run offload with ``?synchronous=full``, so that one row
compares both at the same durability.
"""

from __future__ import annotations

import os

from benchmarks.scenarios import drain, enqueue
from benchmarks.spec import Figures, Metric, Params, Part, Scenario

SYSTEMS = ("offload", "Huey")


def run(system: str, params: Params) -> Figures:
    """One part per child (a fresh store and process each): enqueue, or drain."""
    os.environ["BENCH_SQLITE_SYNCHRONOUS"] = "full"  # read by offload's driver and its workers
    if params["part"] == "enqueue":
        figures = enqueue.run("sqlite", system, params)
        return {"one_per_s": figures["one_per_s"]}
    return {"drain_per_s": drain.run("sqlite", system, params)["drain_per_s"]}


def parts(params: Params) -> tuple[Part, ...]:
    return (Part("enqueue", {"part": "enqueue"}), Part("drain", {"part": "drain"}))


def _versions(system: str) -> dict[str, str]:
    from benchmarks.peers import versions

    return versions("sqlite", system)


SCENARIO = Scenario(
    name="sqlite-full",
    title="SQLite at synchronous=FULL for both (Huey's default; offload's is NORMAL)",
    metrics=(
        Metric("one_per_s", "enqueue, one call per task, both FULL", "tasks/s", better="higher"),
        Metric("drain_per_s", "drain, 2 worker processes, both FULL", "tasks/s", better="higher"),
    ),
    systems=SYSTEMS,
    tags=("durable", "sqlite"),
    full={"tasks": 20_000, "warmup": 200, "processes": 2, "wait_timeout": 300.0},
    quick={"tasks": 1_000, "warmup": 100, "processes": 2, "wait_timeout": 60.0},
    run=run,
    versions=_versions,
    timeout=600.0,
    quick_timeout=120.0,
    table="SQLite",
    parts=parts,
)
