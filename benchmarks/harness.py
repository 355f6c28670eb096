"""The machinery: the peers' venv, child processes, interleaved rounds.

Every process the harness starts gets its own session (and so its own
process group), and is killed by group when its time is up: nothing it
started is left behind, and nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.record import ScenarioResult
from benchmarks.spec import Scenario
from benchmarks.workers import GROUPS_ENV, reap_groups

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
_INSTALL_TIMEOUT = 900.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class Venv:
    """A virtual environment of the benchmark's own, built from a pinned requirements file."""

    name: str
    path: Path
    requirements: Path
    # Whether offload itself goes in (editable, with its server clients).
    offload: bool

    @property
    def python(self) -> Path:
        """Its interpreter: what the children of its systems run with."""
        return self.path / "bin" / "python"

    @property
    def stamp(self) -> Path:
        """What the venv was built from; a change in any of it rebuilds the venv."""
        return self.path / ".built-from"


# The peers and offload: every system but the ones listed in systems.VENVS.
PEERS = Venv("peers", BENCH_DIR / ".peers-venv", BENCH_DIR / "peers-requirements.txt", offload=True)
# arq 0.28 requires redis<6, Celery 5.7's kombu redis>=6.4: arq gets a venv of its own.
ARQ = Venv("arq", BENCH_DIR / ".arq-venv", BENCH_DIR / "arq-requirements.txt", offload=False)
VENVS: dict[str, Venv] = {venv.name: venv for venv in (PEERS, ARQ)}
# Kept for callers of the first version of this module.
PEERS_VENV = PEERS.path
PEERS_REQUIREMENTS = PEERS.requirements


class BenchError(Exception):
    """A child or an install step failed or ran out of time."""


def run_command(
    cmd: Sequence[str], timeout: float, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own process group; kill the whole group on timeout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # The caller's PYTHONPATH is not passed on (it would shadow the venvs'
    # packages); BENCH_OFFLOAD_SRC is, on purpose: an A/B run of another
    # revision's src/ (its children and their workers import offload from there).
    other_src = os.environ.get("BENCH_OFFLOAD_SRC")
    if other_src:
        env["PYTHONPATH"] = other_src
    env.update(extra_env or {})
    proc = subprocess.Popen(
        list(cmd),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise BenchError(f"timed out after {timeout:g} s: {' '.join(cmd[:4])} ...") from None
    except BaseException:  # Ctrl-C included: never leave a child running
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    # The child leads its own group (start_new_session), so its pid is the
    # group id; it is not reaped yet, so the id can't have been reused.
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing to kill
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _checked(cmd: Sequence[str], timeout: float) -> None:
    done = run_command(cmd, timeout)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({done.returncode}):\n{_tail(done.stderr)}")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _fingerprint(venv: Venv) -> str:
    parts = [sys.version, venv.requirements.read_text()]
    if venv.offload:  # offload's own dependencies come from pyproject.toml
        parts.append((ROOT / "pyproject.toml").read_text())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def ensure_venv(venv: Venv, say: Say) -> Path:
    """``venv``'s python, building or refreshing the venv if needed.

    The pinned packages of its requirements file go in, and for the peers'
    venv offload itself (editable, so the code measured is the working tree's).
    """
    python = venv.python
    wanted = _fingerprint(venv)
    if python.exists() and venv.stamp.exists() and venv.stamp.read_text() == wanted:
        return python
    say(f"building the {venv.name} venv in {venv.path.relative_to(ROOT)} (once) ...")
    if not python.exists():
        # The same interpreter as the harness: every system on one Python.
        _checked([sys.executable, "-m", "venv", str(venv.path)], 300.0)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _checked([*pip, "-r", str(venv.requirements)], _INSTALL_TIMEOUT)
    if venv.offload:
        # With the server brokers' client extras: offload on Redis and PostgreSQL.
        _checked([*pip, "-e", f"{ROOT}[redis,postgres]"], _INSTALL_TIMEOUT)
    venv.stamp.write_text(wanted)
    return python


def ensure_peers_venv(say: Say) -> Path:
    """The peers' venv python (offload and every peer but arq)."""
    return ensure_venv(PEERS, say)


def compile_offload(python: Path) -> None:
    """Compile offload's sources (and the harness's) to bytecode before a run.

    pip compiles every package it installs, so the peers load from bytecode;
    offload goes in editable, from the working tree, where Python writes
    bytecode on first import only if it may. With PYTHONDONTWRITEBYTECODE
    set (as on some machines) it may not: each worker process, started for
    every drain round, would compile offload from source again (0.2 s on a
    slow machine) while the peers' workers did not. Compiled here, every
    system starts as an installed package does. (Python still reads bytecode
    with that variable set; it only never writes it.)
    """
    trees = [ROOT / "src" / "offload", ROOT / "benchmarks"]
    other_src = os.environ.get("BENCH_OFFLOAD_SRC")
    if other_src:
        trees.append(Path(other_src) / "offload")
    _checked([str(python), "-m", "compileall", "-q", *map(str, trees)], 300.0)


def run_child(
    python: Path, scenario: str, system: str, params: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """One measurement in a fresh process; the JSON line it printed."""
    cmd = [str(python), "-m", "benchmarks.child", scenario, system, json.dumps(params)]
    # Worker processes the child starts lead groups of their own, out of reach
    # of a kill of the child's group: the child lists them here, and whatever
    # of them outlives a failed child is killed after it.
    with tempfile.TemporaryDirectory(prefix="offload-bench-groups-") as tmp:
        groups = Path(tmp) / "groups"
        clean = False
        try:
            done = run_command(cmd, timeout, {GROUPS_ENV: str(groups)})
            clean = done.returncode == 0
        finally:
            if not clean:  # a child that ended well stopped its workers itself
                reap_groups(groups)
    if done.returncode != 0:
        raise BenchError(f"exit {done.returncode}:\n{_tail(done.stderr)}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        line: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchError(f"no JSON line on stdout: {done.stdout[-500:]!r}") from None
    return line


def rotations(systems: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of systems in each round: A B C, then B C A, then C A B, ...

    Interleaving spreads the machine's drift (other jobs, heat, caches)
    over every system instead of handing it all to whichever runs last.
    """
    count = len(systems)
    return [list(systems[r % count :]) + list(systems[: r % count]) for r in range(rounds)]


def run_scenario(
    pythons: Callable[[str], Path], scenario: Scenario, *, quick: bool, rounds: int, say: Say
) -> ScenarioResult:
    """Every round of ``scenario`` for every system, interleaved.

    ``pythons(system)`` is the interpreter of the venv that runs ``system``'s
    children. A scenario with parts (e.g. queue depths) runs one child per
    part, system and round: in each round, part by part, every system in the
    round's order; then the harness adds the scenario's derived figures.
    """
    params = dict(scenario.params(quick))
    parts = scenario.parts(params)
    # The systems some part runs (a peer may sit out a scenario, or a quick run).
    systems = [s for s in scenario.systems if any(p.runs(s, 1) for p in parts)]
    result = ScenarioResult(
        scenario.name,
        scenario.title,
        params,
        systems,
        list(scenario.metrics_for(quick)),
        table=scenario.table,
    )
    for number, order in enumerate(rotations(systems, rounds), start=1):
        figures: dict[str, dict[str, float]] = {system: {} for system in order}
        for part in parts:
            for system in order:
                if not part.runs(system, number):
                    continue
                label = f"round {number}" + (f" {part.name}" if part.name else "")
                part_name = f" {part.name}" if part.name else ""
                where = f"{scenario.name}{part_name} round {number}/{rounds} {system}"
                started = time.monotonic()
                try:
                    line = run_child(
                        pythons(system),
                        scenario.name,
                        system,
                        {**params, **part.params},
                        scenario.child_timeout(quick),
                    )
                except BenchError as error:
                    result.fail(system, f"{label}: {error}")
                    say(f"  {where}: FAILED {error}")
                    continue
                figures[system].update(line["figures"])
                result.versions.update(line.get("versions", {}))
                shown = ", ".join(f"{k}={v:.4g}" for k, v in line["figures"].items())
                say(f"  {where}: {shown} ({time.monotonic() - started:.1f} s)")
        for system in order:
            if figures[system]:
                if scenario.derive is not None:
                    figures[system].update(scenario.derive(params, figures[system]))
                result.add(system, figures[system])
    return result
