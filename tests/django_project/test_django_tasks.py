"""offload's Django backend in a real project: views enqueue, a real worker runs, Django reads.

Each test module run starts ``manage.py runserver`` and ``manage.py
offload_worker`` (one thread: the connection test needs its jobs on one
thread) on a fresh database and broker of their own: SQLite for both, and
PostgreSQL for both (Django's tables in a schema of the test's own, the
jobs in an offload namespace). An HTTP client drives the views.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import offload
from helpers import free_port, stop
from servers import POSTGRES_URL, require_postgres, scratch_url

pytestmark = pytest.mark.timeout(180)

PROJECT = Path(__file__).resolve().parent
WAIT = 60.0  # seconds: a process starting, or a job finishing, on a loaded machine


@dataclass
class Site:
    base: str
    broker_url: str

    def call(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.base + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def finished(self, name: str, result_id: str) -> dict[str, Any]:
        """The result, read through Django's ``get_result``, once finished."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            status, body = self.call("GET", f"/results/{name}/{result_id}")
            assert status == 200, body
            if body["finished"]:
                return body
            time.sleep(0.05)
        raise AssertionError(f"{name} {result_id} did not finish in {WAIT} s: {body}")


def _manage(*command: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *command],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("shop")
    with scratch_url(request.param, folder) as broker_url:
        env = {**os.environ, "OFFLOAD_URL": broker_url, "SHOP_DB": request.param}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        schema = f"shop_{uuid.uuid4().hex}"
        if request.param == "postgres":
            _sql(f'CREATE SCHEMA "{schema}"')
            env["SHOP_POSTGRES_SCHEMA"] = schema
        else:
            env["SHOP_SQLITE_PATH"] = str(folder / "shop.sqlite3")
        try:
            migrate = subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=PROJECT,
                env=env,
                capture_output=True,
                text=True,
                timeout=WAIT,
                check=False,
            )
            assert migrate.returncode == 0, migrate.stdout + migrate.stderr
            yield from _serve(env)
        finally:
            if request.param == "postgres":
                _sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _serve(env: dict[str, str]) -> Iterator[Site]:
    port = free_port()
    web = _manage("runserver", f"127.0.0.1:{port}", "--noreload", env=env)
    worker = _manage("offload_worker", "--concurrency", "1", env=env)
    site = Site(f"http://127.0.0.1:{port}", env["OFFLOAD_URL"])
    try:
        _wait_for_server(site, web)
        yield site
    finally:
        web_output, worker_output = stop(web, WAIT), stop(worker, WAIT)
    assert "Internal Server Error" not in web_output, web_output
    assert worker.returncode == 0, f"the worker ended with {worker.returncode}:\n{worker_output}"
    assert "offload worker" in worker_output and "stopped" in worker_output, worker_output


def _wait_for_server(site: Site, web: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert web.poll() is None, "runserver exited at startup"
        try:
            site.call("GET", "/results/fulfil/none")  # 404, as JSON, once it serves
        except (OSError, json.JSONDecodeError):
            time.sleep(0.1)
        else:
            return
    raise AssertionError(f"runserver did not answer on {site.base}")


def _sql(statement: str) -> None:
    import psycopg

    require_postgres()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(statement)


def test_a_view_enqueues_on_commit_and_the_worker_fulfils_the_order(site: Site) -> None:
    status, body = site.call("POST", "/orders?item=teapot")
    assert status == 200 and body["status"] == "READY", body
    result = site.finished("fulfil", body["result"])
    assert result["status"] == "SUCCESSFUL", result
    assert result["return_value"] == {"order": body["order"], "item": "teapot"}
    assert result["args"] == [body["order"]] and result["attempts"] == 1
    assert site.call("GET", f"/orders/{body['order']}") == (200, {"status": "fulfilled"})


def test_a_rolled_back_request_enqueues_nothing(site: Site) -> None:
    status, body = site.call("POST", "/orders/rolled-back?item=kettle")
    assert status == 409, body
    time.sleep(0.5)  # had it been sent, it would be in the broker at once
    assert site.call("GET", f"/results/fulfil/{body['result']}")[0] == 404


def test_a_failure_is_failed_with_the_exception_class(site: Site) -> None:
    _, body = site.call("POST", "/enqueue/out_of_stock?arg=mugs")
    result = site.finished("out_of_stock", body["result"])
    assert result["status"] == "FAILED" and result["error"] == "builtins.LookupError", result


def test_aenqueue_from_an_async_view_runs_an_async_task(site: Site) -> None:
    _, body = site.call("POST", "/add?a=2&b=40")
    result = site.finished("add", body["result"])
    assert (result["status"], result["return_value"]) == ("SUCCESSFUL", 42)


def test_a_task_with_context_sees_its_result_id_and_attempt(site: Site) -> None:
    _, body = site.call("POST", "/enqueue/describe?arg=hello&queue=mail")
    result = site.finished("describe", body["result"])
    assert result["return_value"] == {"label": "hello", "id": body["result"], "attempt": 1}


def test_priority_queue_and_run_after_are_offloads_own(site: Site) -> None:
    path = "/enqueue/describe?arg=later&priority=7&queue=mail&after=3600"
    _, body = site.call("POST", path)
    app = offload.App(site.broker_url)
    try:
        job = app.job(body["result"])
        assert job is not None
        assert (job.priority, job.queue, job.state) == (7, "mail", offload.State.QUEUED)
        assert job.eta is not None and job.eta > time.time() + 3000
        status, pending = site.call("GET", f"/results/describe/{body['result']}")
        assert (status, pending["status"], pending["finished"]) == (200, "READY", False)
        assert app.inspector.cancel(body["result"])  # `offload cancel ID`, as an operator would
    finally:
        app.shutdown(wait=False)
    status, cancelled = site.call("GET", f"/results/describe/{body['result']}")
    assert (status, cancelled["status"], cancelled["finished"]) == (200, "FAILED", True)


def test_the_worker_closes_database_connections_after_each_job(site: Site) -> None:
    # One worker thread: the second job runs where the first opened a connection.
    for _ in range(2):
        _, body = site.call("POST", "/enqueue/connection_left_open")
        result = site.finished("connection_left_open", body["result"])
        assert result["return_value"] is False, "a connection outlived its job"
