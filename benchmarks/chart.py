"""A PNG of the enqueue and drain rows: ``python -m benchmarks.chart RECORD.json OUT.png``.

Run with the peers' venv (matplotlib is installed there, never in offload's
own environment); ``python -m benchmarks`` does so after a run that has
durable scenarios. One panel per broker, one group of bars per figure, one
bar per system, the median of the rounds with its min-max as an error bar.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

# The rows charted: (scenario name prefix, metric key, label).
ROWS = (
    ("enqueue", "one_per_s", "enqueue, one call"),
    ("enqueue", "batch_per_s", "enqueue, batch"),
    ("drain", "drain_per_s", "drain, 2 processes"),
)


def series(record: dict[str, Any]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{broker: {row label: {system: samples}}} for the charted rows."""
    found: dict[str, dict[str, dict[str, list[float]]]] = {}
    for scenario in record["scenarios"]:
        prefix, _, broker = scenario["name"].partition("-")
        for row_prefix, key, label in ROWS:
            if prefix != row_prefix:
                continue
            for system, metrics in scenario["samples"].items():
                samples = [x for x in metrics.get(key, []) if x is not None]
                if samples:
                    found.setdefault(broker, {}).setdefault(label, {})[system] = samples
    return found


def draw(record: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write a file
    import matplotlib.pyplot as plt

    data = series(record)
    if not data:
        raise SystemExit("no enqueue or drain rows in this record: nothing to chart")
    figure, axes = plt.subplots(len(data), 1, figsize=(10, 3.2 * len(data)), squeeze=False)
    for axis, (broker, rows) in zip(axes[:, 0], sorted(data.items()), strict=True):
        systems = sorted({s for row in rows.values() for s in row}, key=_offload_first)
        width = 0.8 / len(systems)
        for index, system in enumerate(systems):
            heights, low, high, xs = [], [], [], []
            for position, samples in enumerate(rows.get(label) for _, _, label in ROWS):
                if samples and system in samples:
                    values = samples[system]
                    median = statistics.median(values)
                    xs.append(position + index * width)
                    heights.append(median)
                    low.append(median - min(values))
                    high.append(max(values) - median)
            axis.bar(xs, heights, width, yerr=[low, high], label=system, capsize=2)
        axis.set_xticks([p + 0.4 - width / 2 for p in range(len(ROWS))])
        axis.set_xticklabels([label for _, _, label in ROWS])
        axis.set_yscale("log")  # one-call rows are 10x below batch rows: keep both readable
        axis.set_ylabel("tasks/s, log scale (higher is better)")
        axis.set_title(broker)
        axis.legend(fontsize="small", ncol=len(systems))
    machine = record.get("machine", {})
    figure.suptitle(
        f"{record.get('command', 'python -m benchmarks')} · {record.get('started', '')[:16]} · "
        f"{machine.get('cpu_count', '?')} CPUs · median of {record.get('rounds', '?')} rounds"
    )
    figure.tight_layout()
    figure.savefig(out, dpi=100)


def _offload_first(system: str) -> tuple[int, str]:
    return (0 if system == "offload" else 1, system)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.chart RECORD.json OUT.png", file=sys.stderr)
        return 2
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
