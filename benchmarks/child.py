"""One measurement in a fresh process: ``python -m benchmarks.child SCENARIO SYSTEM PARAMS``.

The harness runs this with the peers' venv python, one process per system
and round, so no two systems share an interpreter, a pool or a heap. It
prints exactly one JSON line on stdout (the figures); anything else goes
to stderr.
"""

from __future__ import annotations

import json
import logging
import platform
import sys

from benchmarks.scenarios import SCENARIOS


def main(argv: list[str]) -> int:
    """Run one scenario for one system; print its figures as one JSON line."""
    if len(argv) != 3:
        print("usage: python -m benchmarks.child SCENARIO SYSTEM PARAMS_JSON", file=sys.stderr)
        return 2
    name, system, params = argv[0], argv[1], json.loads(argv[2])
    # WARNING for every library alike: nobody pays for log lines.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    scenario = SCENARIOS[name]
    figures = scenario.run(system, params)
    line = {
        "figures": figures,
        "versions": scenario.versions(system),
        "python": platform.python_version(),
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
