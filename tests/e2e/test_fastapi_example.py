"""examples/fastapi_app.py, served by a real uvicorn, with a real ``offload worker`` process.

An HTTP client posts work, gets a job id back at once (202), and reads the
result through the endpoint that awaits it; on SQLite, Redis and PostgreSQL.
A task that raises comes back as a failed state with its error, and an
unknown job id is a 404.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import free_port, stop
from servers import scratch_url

pytest.importorskip("fastapi", reason='the example needs pip install -e ".[examples]"')
pytest.importorskip("uvicorn", reason='the example needs pip install -e ".[examples]"')

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
START = 60.0  # seconds for a process to start on a loaded machine


def _request(method: str, url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=START) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _start(*command: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,  # `examples.fastapi_app` imports from the repository's root
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The example app under uvicorn and one worker, on a broker of the test's own; its URL."""
    with scratch_url(request.param, tmp_path) as url:
        env = {**os.environ, "OFFLOAD_URL": url}
        port = free_port()
        web = _start(
            "uvicorn", "examples.fastapi_app:api", "--port", str(port), "--no-access-log", env=env
        )
        worker = _start("offload", "worker", "examples.fastapi_app:jobs", env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(base, web)
            yield base
        finally:
            web_output, worker_output = stop(web, START), stop(worker, START)
        # uvicorn ends by re-raising the SIGTERM it handled, once shut down cleanly.
        assert web.returncode in (0, -signal.SIGTERM), f"uvicorn: {web.returncode}\n{web_output}"
        assert worker.returncode == 0, (
            f"the worker ended with {worker.returncode}:\n{worker_output}"
        )
        assert "Application shutdown complete" in web_output, web_output  # the lifespan's exit ran


def _wait_for(base: str, web: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START
    while time.monotonic() < deadline:
        assert web.poll() is None, "uvicorn exited at startup (the lifespan failed?)"
        try:
            with urllib.request.urlopen(f"{base}/openapi.json", timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"uvicorn did not answer on {base} within {START} s")


def test_an_endpoint_enqueues_and_another_awaits_the_result(server: str) -> None:
    status, body = _request("POST", f"{server}/words?text=to+be+or+not+to+be")
    assert status == 202, body
    job_id = body["id"]
    status, body = _request("GET", f"{server}/jobs/{job_id}?wait=30")
    assert (status, body) == (200, {"id": job_id, "state": "succeeded", "result": 6})

    status, body = _request("POST", f"{server}/words?text=fail")
    status, failed = _request("GET", f"{server}/jobs/{body['id']}?wait=50")
    assert status == 200 and failed["state"] == "failed", failed
    assert failed["error"] == "ValueError: asked to fail", failed

    assert _request("GET", f"{server}/jobs/no-such-job")[0] == 404
