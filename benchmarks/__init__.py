"""offload's benchmark harness: offload against its peers, in one run, as ratios.

Run it with ``python -m benchmarks`` from the repository root (``make bench``);
``benchmarks/README.md`` says what each scenario measures and how.

The pieces:

- ``scenarios/``: what is measured. Each scenario module declares its
  figures and a ``run(system, params)`` function executed in a child process.
- ``systems.py``: how each system under test is driven through its public API.
- ``harness.py``: the peers' virtual environment, child processes, rounds.
- ``report.py``: the JSON record and the Markdown table.
"""
