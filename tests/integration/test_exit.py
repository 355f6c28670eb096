"""Interpreter exit: unfinished tasks are waited for, or cancelled; Ctrl-C is prompt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from helpers import TESTS

TIMEOUT = 30.0

WRITER = """
import sys, time
from pathlib import Path
import offload

def write(name):
    Path(name + ".started").touch()
    time.sleep(0.3)
    Path(name + ".done").touch()
"""


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(WRITER) + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def files(tmp_path: Path, suffix: str) -> set[str]:
    return {p.stem for p in tmp_path.glob(f"*.{suffix}")}


def test_exit_waits_for_unfinished_tasks(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_script(
        tmp_path,
        """
        task = offload.task(write)
        for name in ("a", "b", "c"):
            task(name)
        print("main ends")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "main ends" in result.stdout
    assert files(tmp_path, "done") == {"a", "b", "c"}
    assert time.monotonic() - started < TIMEOUT


def test_exit_waits_for_queued_tasks_on_a_small_pool(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        app = offload.App(threads=1)
        task = app.task(write)
        for name in ("a", "b", "c"):
            task(name)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert files(tmp_path, "done") == {"a", "b", "c"}


def test_on_exit_cancel_does_not_run_queued_tasks(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_script(
        tmp_path,
        """
        app = offload.App(threads=1, on_exit="cancel")
        task = app.task(write)
        handles = [task(name) for name in ("a", "b", "c")]
        while not Path("a.started").exists():
            time.sleep(0.005)
        """,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert files(tmp_path, "started") == {"a"}, "queued tasks ran after the exit"
    assert not files(tmp_path, "done") - {"a"}
    assert elapsed < 0.3 * 3 + 2, "exit waited for the queued tasks"


def test_shutdown_cancel_pending_does_not_run_queued_tasks(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        task = offload.task(write)
        app = offload.default_app()
        app.resize("thread", 1)
        handles = [task(name) for name in ("a", "b", "c")]
        while not Path("a.started").exists():
            time.sleep(0.005)
        offload.shutdown(wait=False, cancel_pending=True)
        print([h.state.value for h in handles])
        time.sleep(0.5)  # "a" finishes; "b" and "c" must not start
        print([h.state.value for h in handles])
        print(all(h.done() for h in handles))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert files(tmp_path, "started") == {"a"}, "queued tasks ran after shutdown"
    first, later, all_done = result.stdout.splitlines()[-3:]
    assert first == "['running', 'cancelled', 'cancelled']"
    assert later == "['succeeded', 'cancelled', 'cancelled']"
    assert all_done == "True", "a handle that will never finish was left pending"


def test_ctrl_c_during_the_exit_wait_exits_promptly(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging
            import signal
            import time
            import offload

            # Ctrl-C as a terminal delivers it, even if whoever started the test
            # run ignores SIGINT (a shell's background job does: it is inherited).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            # offload says when its exit wait begins: the test presses Ctrl-C then.
            logging.basicConfig(level=logging.INFO)

            @offload.task
            def long_sleep():
                time.sleep(30)

            long_sleep()
            print("ready", flush=True)
            """
        )
    )
    child = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert child.stderr is not None
        logged = [child.stderr.readline()]  # a loaded machine may take its time: no fixed sleep
        while "waiting for 1 tasks to finish" not in logged[-1] and logged[-1] and len(logged) < 20:
            logged.append(child.stderr.readline())
        assert "waiting for 1 tasks to finish" in logged[-1], logged
        time.sleep(0.2)  # inside the wait now
        assert child.poll() is None, "the child did not wait for its running task"
        child.send_signal(signal.SIGINT)
        sent = time.monotonic()
        child.wait(timeout=5)
        assert time.monotonic() - sent < 5
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    assert "Traceback" not in stderr, stderr
