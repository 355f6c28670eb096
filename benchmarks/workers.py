"""Worker processes a measurement starts: each in its own process group.

A durable scenario's child starts the systems' worker commands (``offload
worker ...``, ``celery ... worker``, ...). Each is started in a new session,
so it leads its own process group and everything it forks (Celery's and
Huey's pool processes, RQ's work horses) is stopped with it, by group.

The harness kills a child that overruns by its own group, which does not
reach these: so each group id is also written to the file named by
``BENCH_GROUPS_FILE`` and the harness kills whatever is left of them after
the child ends (``reap_groups``). Nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

GROUPS_ENV = "BENCH_GROUPS_FILE"
# Seconds a worker gets to stop on SIGTERM before its group is SIGKILLed.
STOP_GRACE = 5.0


class WorkerError(RuntimeError):
    """A worker process exited while it was needed."""


class Workers:
    """Worker processes started together and stopped together, by group."""

    def __init__(self, commands: Sequence[Sequence[str]], env: Mapping[str, str], cwd: Path):
        self.commands = [list(command) for command in commands]
        self._env = dict(env)
        self._cwd = cwd
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start every command; each leads a new process group."""
        for command in self.commands:
            proc = subprocess.Popen(
                command,
                cwd=self._cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # Workers log at WARNING: what they say is an error worth seeing.
                stderr=None,
                start_new_session=True,
            )
            self._procs.append(proc)
            _remember_group(proc.pid)

    def check(self) -> None:
        """Raise if a worker has exited (a crash would otherwise look like a stall)."""
        for proc, command in zip(self._procs, self.commands, strict=True):
            code = proc.poll()
            if code is not None:
                raise WorkerError(f"worker {' '.join(command[:4])} ... exited with {code}")

    def peak_rss(self) -> int:
        """The largest peak RSS (VmHWM, bytes) of any live process in our groups."""
        groups = {proc.pid for proc in self._procs}
        peak = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # Fields after the command name (which may hold spaces): state ppid pgrp.
                pgrp = int(stat.read_text().rsplit(")", 1)[1].split()[2])
                if pgrp in groups:
                    peak = max(peak, _hwm(stat.with_name("status")))
            except (OSError, ValueError, IndexError):
                continue  # the process ended while we looked
        return peak

    def stop(self) -> None:
        """SIGTERM every group, wait a little, then SIGKILL what is left."""
        for proc in self._procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            # Even a leader that exited may leave pool children in its group.
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE)
        self._procs.clear()


@contextlib.contextmanager
def running(
    commands: Sequence[Sequence[str]], env: Mapping[str, str], cwd: Path
) -> Iterator[Workers]:
    """Workers started on entry and stopped (by group) on exit, whatever happened."""
    workers = Workers(commands, env, cwd)
    try:
        workers.start()
        yield workers
    finally:
        workers.stop()


def _hwm(status: Path) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    return 0


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signum)


def _remember_group(pgid: int) -> None:
    path = os.environ.get(GROUPS_ENV)
    if path:
        with open(path, "a", encoding="ascii") as file:
            file.write(f"{pgid}\n")


def reap_groups(path: Path) -> int:
    """SIGKILL every process group listed in ``path`` that still exists; how many."""
    if not path.exists():
        return 0
    killed = 0
    for line in path.read_text(encoding="ascii").split():
        try:
            os.killpg(int(line), signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError, ValueError):
            continue
    path.unlink()
    return killed
