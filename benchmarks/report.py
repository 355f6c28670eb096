"""The run's record as JSON, and the table as Markdown.

Absolute figures vary with the machine and its neighbours; the ratio
column (offload's median over the best peer's median in the same run) is
the figure to compare across runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.record import RunRecord, ScenarioResult, Summary
from benchmarks.spec import Metric
from benchmarks.systems import OFFLOAD

# Named, not typed in: they look like "x" and "-" in an editor (ruff RUF001).
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"

DIRECTION = (
    "Ratio = offload's median ÷ the best peer's median in that row. For a "
    f"lower-is-better row (time, memory) **a ratio below 1.00{TIMES} means offload is "
    f"better**; for a higher-is-better row, above 1.00{TIMES}. Each row says which it is."
)


def machine_info(root: Path) -> dict[str, Any]:
    """Where and on what the run happened."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "offload_commit": _git(root, "rev-parse", "--short=12", "HEAD"),
        # Uncommitted changes mean the commit alone doesn't name the code measured.
        "offload_dirty": bool(_git(root, "status", "--porcelain", "--", "src")),
        "offload_source_start": source_digest(root),
        "loadavg_start": loadavg(),
    }


def source_digest(root: Path) -> str:
    """A digest of offload's source files: if it differs at the end, the code changed."""
    digest = hashlib.sha256()
    for path in sorted((root / "src").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def write(record: RunRecord, out_dir: Path, stem: str) -> list[Path]:
    """The run's JSON (timestamped and ``{stem}.json``) and ``{stem}.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps(asdict(record), indent=2, ensure_ascii=False) + "\n"
    stamp = record.started.replace(":", "").replace("-", "")[:15]
    suffix = "" if stem == "latest" else stem.removeprefix("latest")
    paths = [out_dir / f"run-{stamp}{suffix}.json", out_dir / f"{stem}.json"]
    for path in paths:
        path.write_text(data, encoding="utf-8")
    markdown = out_dir / f"{stem}.md"
    markdown.write_text(render_markdown(record), encoding="utf-8")
    return [*paths, markdown]


def render_markdown(record: RunRecord) -> str:
    """The whole report: header, table, conditions, failures."""
    machine = record.machine
    dirty = " + uncommitted changes" if machine.get("offload_dirty") else ""
    lines = [
        f"# offload benchmark ({record.mode} run)",
        "",
        f"`{record.command}` · started {record.started} · {_rounds(record.rounds)}, "
        f"interleaved · offload {machine.get('offload_commit')}{dirty} · "
        f"Python {machine.get('python')} · {machine.get('cpu_count')} CPUs · "
        f"load {machine.get('loadavg_start')} → {machine.get('loadavg_end')}",
        "",
        f"Each cell: median of the rounds (min{DASH}max), one fresh process per system "
        f"and round. {DIRECTION}",
        "",
        *_tables(record.scenarios),
        "Conditions:",
        "",
        *(_conditions(result) for result in record.scenarios),
    ]
    if machine.get("offload_source_start") != machine.get("offload_source_end"):
        lines += [
            "",
            "**Warning: offload's source changed during this run**: rounds measured "
            "different code. Run again on a quiet tree.",
        ]
    failures = [
        f"- {result.name} / {system}: {message}"
        for result in record.scenarios
        for system, messages in result.errors.items()
        for message in messages
    ]
    if failures:
        lines += ["", "Failures (their cells are missing):", "", *failures]
    return "\n".join(lines) + "\n"


def _tables(results: list[ScenarioResult]) -> list[str]:
    """One table per group of scenarios comparing the same systems (a backend)."""
    groups: dict[str, list[ScenarioResult]] = {}
    for result in results:
        groups.setdefault(result.table, []).append(result)
    lines: list[str] = []
    for label, members in groups.items():
        lines += [f"### {label}", "", render_table(members), ""]
    return lines


def _rounds(count: int) -> str:
    return "1 round" if count == 1 else f"{count} rounds"


def render_table(results: list[ScenarioResult]) -> str:
    """One row per scenario figure; one column per system; then the ratio."""
    systems = _columns(results)
    header = ["scenario", "figure", *systems, "offload ÷ best peer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        for metric in result.metrics:
            cells = [_cell(result, system, metric.key) for system in systems]
            label = f"{metric.label}, {metric.unit} ({metric.better} is better)"
            row = [result.name, label, *cells, ratio(result, metric)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _columns(results: list[ScenarioResult]) -> list[str]:
    # offload first, then the peers in the order scenarios list them.
    seen: dict[str, None] = {OFFLOAD: None}
    for result in results:
        seen.update(dict.fromkeys(result.systems))
    return list(seen)


def _cell(result: ScenarioResult, system: str, key: str) -> str:
    if system not in result.systems:
        return "—"
    summary = result.summary(system, key)
    if summary is None:
        # A system that measured the row's other figures but not this one
        # doesn't offer it (e.g. a batch API); else its rounds failed.
        offered = not result.samples.get(system) or system in result.errors
        return "failed" if offered else "n/a"
    return f"{fmt(summary.median)} ({fmt(summary.low)}{DASH}{fmt(summary.high)})"


def ratio(result: ScenarioResult, metric: Metric) -> str:
    """offload's median over the best peer's, naming that peer."""
    ours = result.summary(OFFLOAD, metric.key)
    peers = [
        (system, summary)
        for system in result.systems
        if system != OFFLOAD and (summary := result.summary(system, metric.key)) is not None
    ]
    if ours is None or not peers:
        return "—"
    pick = min if metric.better == "lower" else max
    best_name, best = pick(peers, key=lambda pair: pair[1].median)
    return _ratio_text(ours, best, best_name, metric)


def _ratio_text(ours: Summary, best: Summary, best_name: str, metric: Metric) -> str:
    ours_nil, best_nil = _nil(ours, metric), _nil(best, metric)
    if not (ours_nil or best_nil):
        return f"{ours.median / best.median:.2f}{TIMES} {best_name}"
    # A ratio with (almost) nothing on either side means nothing: say who is
    # below the floor instead.
    below = f"< {metric.floor:g} {metric.unit}"
    if ours_nil and best_nil:
        return f"n/a: both {below}"
    if ours_nil:
        return f"n/a: offload {below}, {best_name} not"
    return f"n/a: {best_name} {below}, offload not"


def _nil(summary: Summary, metric: Metric) -> bool:
    return summary.median <= 0 or summary.median < metric.floor


def fmt(value: float) -> str:
    """Enough digits to compare, no more: 1,234 · 14.2 · 1.012 · 0.0471."""
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.3f}"
    return f"{value:.3g}"


def _conditions(result: ScenarioResult) -> str:
    params = ", ".join(f"{key}={value}" for key, value in result.params.items())
    versions = ", ".join(f"{name} {version}" for name, version in sorted(result.versions.items()))
    return f"- **{result.name}**: {result.title}. {params}. Versions: {versions or 'n/a'}."
