"""A durable app in one process: what a call stores, what comes back, what is refused."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import offload
from offload import State

WAIT = 20.0


def test_a_call_is_stored_before_it_returns(tasks: Any, db_url: str) -> None:
    handle = tasks.add(2, 3)
    # Another app on the same file (as another process would) sees the job.
    other = offload.App(db_url)
    try:
        job = other.job(handle.id)
        assert job is not None
        assert job.state is State.QUEUED
        assert job.task == "durable_tasks.add"
    finally:
        other.shutdown(wait=False)


def test_unencodable_argument_is_refused_at_the_call_with_its_path(tasks: Any) -> None:
    with pytest.raises(offload.NotSerializable) as caught:
        tasks.record("/tmp/x", object())
    assert "args[1]" in str(caught.value)
    assert "object" in str(caught.value)


def test_lambda_is_refused_by_a_durable_app(tasks: Any) -> None:
    bad = tasks.app.task(name="bad")(lambda: 1)
    with pytest.raises(offload.TaskNotImportable, match="lambda"):
        bad()


def test_embedded_worker_runs_calls_in_this_process(db_url: str) -> None:
    app = offload.App(db_url, embedded_worker=True, name="embedded")
    try:
        double = app.task(name="double")(_double)
        handles = double.map(range(20))
        assert [h.result(timeout=WAIT) for h in handles] == [x * 2 for x in range(20)]
        assert app.job(handles[0].id).state is State.SUCCEEDED  # type: ignore[union-attr]
    finally:
        app.shutdown()


def _double(x: int) -> int:
    return x * 2


def test_work_left_by_a_stopped_app_is_done_by_the_next(db_url: str) -> None:
    # Plain functions run only from included modules (see test_security.py).
    first = offload.App(db_url, name="first", include=[__name__])  # no worker: calls only stored
    ids = [first.enqueue(_double, i).id for i in range(5)]
    first.shutdown(wait=False)
    second = offload.App(db_url, embedded_worker=True, name="second", include=[__name__])
    try:
        second.enqueue(_double, 100).result(timeout=WAIT)  # starts its worker
        assert [second.handle(i).result(timeout=WAIT) for i in ids] == [0, 2, 4, 6, 8]
    finally:
        second.shutdown()


def test_an_idempotency_key_returns_the_live_job(tasks: Any) -> None:
    first = tasks.add.options(key="sum:1")(1, 1)
    second = tasks.add.options(key="sum:1")(1, 1)
    assert second.id == first.id
    assert tasks.add.options(key="sum:2")(1, 1).id != first.id


def test_offload_url_makes_the_default_app_durable(tmp_path: Any) -> None:
    script = tmp_path / "script.py"  # a file: a worker must be able to import the task
    script.write_text(
        "import offload\n"
        "@offload.task\n"
        "def work(x: int) -> int:\n"
        "    return x\n"
        "if __name__ == '__main__':\n"
        "    h = work(1)\n"
        "    print(offload.default_app().durable, offload.default_app().job(h.id).state)\n"
    )
    env = {"OFFLOAD_URL": f"sqlite:///{tmp_path / 'env.db'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "queued"]


def test_a_durable_app_refuses_a_function_from_an_interactive_session(tmp_path: Any) -> None:
    code = "import offload\n@offload.task\ndef work() -> None: ...\nwork()\n"
    env = {"OFFLOAD_URL": f"sqlite:///{tmp_path / 'env.db'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode != 0
    assert "TaskNotImportable" in out.stderr
    assert "interactive session" in out.stderr


@pytest.mark.parametrize(
    "url",
    ["redis2://x", "sqlite://relative.db", "sqlite:///", "nonsense", "memory://x"],
)
def test_bad_urls_are_refused_saying_what_is_supported(url: str) -> None:
    with pytest.raises(offload.ConfigurationError, match="sqlite:///"):
        offload.App(url)


def test_pickle_needs_a_key(db_url: str) -> None:
    with pytest.raises(offload.ConfigurationError, match="pickle_key"):
        offload.App(db_url, serializer="pickle")


def test_an_embedded_worker_releases_running_work_at_exit_for_the_next_start(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    script = tmp_path / "prog.py"
    script.write_text(
        "import time, offload\n"
        f"app = offload.App({url!r}, embedded_worker=True)\n"
        "app.EXIT_GRACE = 0.2\n"
        "@app.task\n"
        "def nap(seconds: float) -> str:\n"
        "    time.sleep(seconds)\n"
        "    return 'rested'\n"
        "if __name__ == '__main__':\n"
        "    handle = nap(30)\n"
        "    time.sleep(0.5)\n"
        "    print(handle.id, app.job(handle.id).state)\n"  # running as the program ends
    )
    first = subprocess.run(
        [sys.executable, str(script)], check=True, capture_output=True, text=True, timeout=60
    )
    job_id, state_at_exit = first.stdout.split()
    assert state_at_exit == "running"
    app = offload.App(url)
    try:
        job = app.job(job_id)
        assert job is not None and job.state is State.QUEUED, "released, not lost or stuck"
        assert job.attempt == 0
    finally:
        app.shutdown(wait=False)
