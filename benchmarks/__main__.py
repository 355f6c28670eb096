"""``python -m benchmarks``: run the scenarios, write the record, print the table."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import harness, report
from benchmarks.record import RunRecord
from benchmarks.scenarios import SCENARIOS, select
from benchmarks.spec import Scenario
from benchmarks.systems import venv_of


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; see benchmarks/README.md."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="offload against its peers, as ratios."
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--rounds", type=_positive, default=3, help="rounds per system (3)")
    parser.add_argument(
        "--out", type=Path, default=harness.BENCH_DIR / "results", help="where results go"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated scenario names or tags (in-process, durable, enqueue, drain, "
        "roundtrip, sqlite, redis, postgres; drain:sqlite = both); default: all",
    )
    args = parser.parse_args(argv)
    try:
        args.names = select(args.only)
    except ValueError as error:
        parser.error(str(error))
    return args


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of rounds")
    return value


def _say(message: str) -> None:
    # Progress goes to stderr, so stdout carries only the final table.
    print(message, file=sys.stderr, flush=True)


def result_stem(quick: bool, only: str | None) -> str:
    """``latest`` for a complete full run; a partial or quick run never overwrites it."""
    label = only.replace(",", "+").replace(":", "-") if only else None
    parts = ["latest"] + (["quick"] if quick else []) + ([label] if label else [])
    return "-".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 1 if any measurement failed, else 0."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    python = harness.ensure_peers_venv(_say)
    pythons = _pythons(python, [SCENARIOS[name] for name in args.names])
    harness.compile_offload(python)
    record = RunRecord(
        started=_now(),
        mode="quick" if args.quick else "full",
        rounds=args.rounds,
        command=" ".join(["python -m benchmarks", *argv]),
        machine=report.machine_info(harness.ROOT),
    )
    for name in args.names:
        _say(f"{name}: {SCENARIOS[name].title}")
        result = harness.run_scenario(
            pythons, SCENARIOS[name], quick=args.quick, rounds=args.rounds, say=_say
        )
        record.scenarios.append(result)
    record.finished = _now()
    record.machine["loadavg_end"] = report.loadavg()
    record.machine["offload_source_end"] = report.source_digest(harness.ROOT)
    paths = report.write(record, args.out, result_stem(args.quick, args.only))
    paths.extend(_chart(python, paths[1]))
    print(report.render_markdown(record))
    _say("written: " + ", ".join(str(path) for path in paths))
    return 1 if record.failed else 0


def _pythons(peers_python: Path, scenarios: list[Scenario]) -> Callable[[str], Path]:
    """system -> the python of its venv, building the other venvs the run needs first.

    A venv no selected scenario needs is not built (``--only in-process``
    builds no arq venv).
    """
    wanted = {venv_of(system) for scenario in scenarios for system in scenario.systems}
    pythons = {harness.PEERS.name: peers_python}
    failures: dict[str, str] = {}
    for name in sorted(wanted - {harness.PEERS.name}):
        try:
            pythons[name] = harness.ensure_venv(harness.VENVS[name], _say)
        except harness.BenchError as error:
            # Its systems' cells say failed, with this reason; the others run.
            failures[name] = f"the {name} venv could not be built: {error}"
            _say(failures[name])

    def python_of(system: str) -> Path:
        venv = venv_of(system)
        if venv in failures:
            raise harness.BenchError(failures[venv])
        return pythons[venv]

    return python_of


def _chart(python: Path, record_json: Path) -> list[Path]:
    """The PNG of the enqueue and drain rows, drawn by the peers' venv (it has matplotlib)."""
    if not any(name.startswith(("enqueue", "drain")) for name in json_names(record_json)):
        return []
    png = record_json.with_suffix(".png")
    command = [str(python), "-m", "benchmarks.chart", str(record_json), str(png)]
    done = subprocess.run(
        command, cwd=harness.ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        _say(f"no chart: {done.stderr.strip()[-300:]}")
        return []
    return [png]


def json_names(record_json: Path) -> list[str]:
    return [scenario["name"] for scenario in json.loads(record_json.read_text())["scenarios"]]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
