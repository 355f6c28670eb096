"""offload.contrib on the in-process app: Prometheus metrics and OpenTelemetry spans.

The same middleware run in worker processes (tests/e2e/test_observability.py);
here the memory broker makes each case fast and deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import offload
from offload import JobContext
from offload.contrib.metrics import Metrics
from offload.contrib.otel import Tracing


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def apps() -> Iterator[list[offload.App]]:
    made: list[offload.App] = []
    yield made
    for app in made:
        app.shutdown(wait=False)


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_metrics_count_each_outcome_and_time_each_attempt(apps: list[offload.App]) -> None:
    metrics = Metrics()
    app = offload.App(middleware=[metrics])
    apps.append(app)
    attempts: list[int] = []

    @app.task(name="t.flaky", retries=1, backoff=offload.Backoff(base=0, jitter=False))
    def flaky() -> str:
        attempts.append(offload.current().attempt)
        if len(attempts) == 1:
            raise ConnectionError("first")
        return "ok"

    @app.task(name="t.broken", retries=0, queue="mail")
    def broken() -> None:
        raise ValueError("always")

    assert flaky().result(timeout=10) == "ok"
    with pytest.raises(ValueError):
        broken().result(timeout=10)
    flaky_labels = {"task": "t.flaky", "queue": "default"}
    assert _value(metrics, "offload_jobs_started_total", **flaky_labels) == 2
    assert _value(metrics, "offload_jobs_retried_total", **flaky_labels) == 1
    assert _value(metrics, "offload_jobs_succeeded_total", **flaky_labels) == 1
    assert _value(metrics, "offload_job_duration_seconds_count", **flaky_labels) == 2
    assert _value(metrics, "offload_jobs_running", **flaky_labels) == 0
    broken_labels = {"task": "t.broken", "queue": "mail"}
    assert _value(metrics, "offload_jobs_failed_total", **broken_labels) == 1
    assert _value(metrics, "offload_jobs_succeeded_total", **broken_labels) is None


def test_metrics_of_an_async_task(apps: list[offload.App]) -> None:
    metrics = Metrics()
    app = offload.App(middleware=[metrics])
    apps.append(app)

    @app.task(name="t.fetch")
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 1

    assert fetch().result(timeout=10) == 1
    labels = {"task": "t.fetch", "queue": "default"}
    assert _value(metrics, "offload_jobs_started_total", **labels) == 1
    assert _value(metrics, "offload_jobs_succeeded_total", **labels) == 1


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return sorted(
        (s for s in spans if s.name == name), key=lambda s: (s.attributes or {})["offload.attempt"]
    )


def test_spans_join_producer_and_attempts_and_a_retry_links_the_first(
    apps: list[offload.App], provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = offload.App(middleware=[Tracing(tracer_provider=provider)])
    apps.append(app)
    seen: list[dict[str, str]] = []

    @app.task(name="t.flaky", retries=1, backoff=offload.Backoff(base=0, jitter=False))
    def flaky() -> str:
        seen.append(dict(offload.current().meta))
        if len(seen) == 1:
            raise ConnectionError("first")
        return "ok"

    assert flaky().result(timeout=10) == "ok"
    assert "traceparent" in seen[0]  # the context rides in the message's meta
    spans = exporter.get_finished_spans()
    (publish,) = [s for s in spans if s.name == "t.flaky publish"]
    first, retry = _by_name(spans, "t.flaky process")
    for attempt in (first, retry):
        assert attempt.context is not None and publish.context is not None
        assert attempt.context.trace_id == publish.context.trace_id
        assert attempt.parent is not None and attempt.parent.span_id == publish.context.span_id
    assert not first.status.is_ok and first.events[0].name == "exception"
    assert [link.context.span_id for link in retry.links] == [first.context.span_id]  # type: ignore[union-attr]
    assert retry.links[0].attributes == {"offload.link": "first attempt"}


def test_a_retry_on_another_worker_links_to_the_publish_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    producer, worker = Tracing(tracer_provider=provider), Tracing(tracer_provider=provider)
    message = offload.Message("j1", "t.work", (), {}, payload=b"[[], {}]")
    producer.enqueue([message], lambda messages: [m.id for m in messages])
    job = JobContext("j1", "t.work", 2, "default", message.meta)  # attempt 2, first ran elsewhere
    assert worker.execute(job, lambda: "done") == "done"
    publish, process = exporter.get_finished_spans()
    assert publish.context is not None
    assert [link.context.span_id for link in process.links] == [publish.context.span_id]
    assert process.links[0].attributes == {"offload.link": "publish"}


def test_a_failed_enqueue_marks_its_publish_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = Tracing(tracer_provider=provider)
    message = offload.Message("j2", "t.work", (), {}, payload=b"[[], {}]")

    def refuse(messages: list[Any]) -> list[str]:
        raise offload.BrokerUnavailable("down")

    with pytest.raises(offload.BrokerUnavailable):
        tracing.enqueue([message], refuse)
    (span,) = exporter.get_finished_spans()
    assert not span.status.is_ok


class _Listing:
    """An inspector with counts, lag and the WorkerListing capability (until brokers have it)."""

    def counts(self) -> dict[str, dict[offload.State, int]]:
        return {"mail": {offload.State.QUEUED: 4}, "default": {}}

    def oldest_ready(self) -> dict[str, float]:
        return {"mail": 1_000.0}

    def workers(self) -> list[Any]:
        return [object(), object()]


def test_the_broker_collector_reports_depth_lag_and_live_workers() -> None:
    from prometheus_client import CollectorRegistry

    from offload.contrib.metrics import BrokerCollector

    registry = CollectorRegistry()
    registry.register(BrokerCollector(_Listing()))  # type: ignore[arg-type]
    value = registry.get_sample_value
    assert value("offload_queue_jobs", {"queue": "mail", "state": "queued"}) == 4
    assert value("offload_queue_jobs", {"queue": "default", "state": "failed"}) == 0
    assert value("offload_queue_lag_seconds", {"queue": "mail"}) > 1_000  # type: ignore[operator]
    assert value("offload_queue_lag_seconds", {"queue": "default"}) == 0
    assert value("offload_workers_alive") == 2
