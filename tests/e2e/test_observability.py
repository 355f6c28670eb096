"""Metrics and tracing across a real ``offload worker`` process (SQLite).

The worker serves Prometheus metrics (``--metrics-port``) that count what
it ran; OpenTelemetry spans (the SDK's in-memory exporter in each process)
join the test's producer span to the worker's attempt spans through the
message's metadata, and a retry links to its first attempt.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")

from helpers import TESTS, free_port, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def observed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("OFFLOAD_TEST_URL", f"sqlite:///{tmp_path / 'jobs.db'}")
    monkeypatch.delenv("OFFLOAD_TEST_SPANS", raising=False)  # this process keeps its own
    sys.modules.pop("observed_tasks", None)
    import observed_tasks

    yield observed_tasks
    observed_tasks.app.shutdown(wait=False)
    sys.modules.pop("observed_tasks", None)


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    raise AssertionError(f"no {name}{{{wanted}}} in:\n{text}")


def test_worker_metrics_and_spans_of_a_job_retried_once(observed: Any, tmp_path: Path) -> None:
    adds = [observed.add(i, i) for i in range(5)]
    failed = observed.fail("on purpose")
    flaky = observed.flaky("payment")
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "OFFLOAD_TEST_SPANS": str(spans_dir),
    }
    command = [sys.executable, "-m", "offload", "worker", "observed_tasks:app"]
    worker = subprocess.Popen(
        [*command, "--metrics-port", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert [h.result(timeout=60) for h in adds] == [0, 2, 4, 6, 8]
        assert flaky.result(timeout=60) == "payment: ok"
        with pytest.raises(ValueError, match="on purpose"):
            failed.result(timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output

    add = {"task": "observed_tasks.add", "queue": "default"}
    assert _metric(text, "offload_jobs_started_total", **add) == 5
    assert _metric(text, "offload_jobs_succeeded_total", **add) == 5
    assert _metric(text, "offload_job_duration_seconds_count", **add) == 5
    flaky_labels = {"task": "observed_tasks.flaky", "queue": "default"}
    assert _metric(text, "offload_jobs_started_total", **flaky_labels) == 2
    assert _metric(text, "offload_jobs_retried_total", **flaky_labels) == 1
    assert _metric(text, "offload_jobs_succeeded_total", **flaky_labels) == 1
    fail_labels = {"task": "observed_tasks.fail", "queue": "default"}
    assert _metric(text, "offload_jobs_failed_total", **fail_labels) == 1
    assert _metric(text, "offload_queue_jobs", queue="default", state="failed") == 1
    assert "offload_queue_lag_seconds" in text

    (published,) = [
        s
        for s in map(observed.span_record, observed.EXPORTER.get_finished_spans())
        if s["attributes"]["messaging.message.id"] == flaky.id
    ]
    assert published["kind"] == "PRODUCER" and published["name"] == "observed_tasks.flaky publish"
    assert wait_until(lambda: any(spans_dir.iterdir()), timeout=10), "the worker wrote no spans"
    worker_spans = [s for f in spans_dir.iterdir() for s in json.loads(f.read_text())]
    first, retry = sorted(
        (s for s in worker_spans if s["attributes"]["messaging.message.id"] == flaky.id),
        key=lambda s: s["attributes"]["offload.attempt"],
    )
    for attempt in (first, retry):
        assert attempt["kind"] == "CONSUMER"
        assert attempt["trace_id"] == published["trace_id"]  # carried in the message's meta
        assert attempt["parent_id"] == published["span_id"]
    assert first["status"] == "ERROR" and retry["status"] == "UNSET"
    assert first["links"] == []
    assert retry["links"] == [
        {"span_id": first["span_id"], "attributes": {"offload.link": "first attempt"}}
    ]
    print(json.dumps([published, first, retry], indent=1))  # shown with -s


def test_metrics_port_without_the_middleware_is_refused_saying_what_to_add(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "OFFLOAD_TEST_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
    }
    command = [sys.executable, "-m", "offload", "worker", "durable_tasks:app"]
    done = subprocess.run(
        [*command, "--metrics-port", str(free_port())],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "App(url, middleware=[Metrics()])" in done.stderr
