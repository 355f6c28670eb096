"""Tasks of the metrics and tracing tests: an app with both middleware, run by a worker process.

Spans go to the OpenTelemetry SDK's in-memory exporter of each process;
at exit a process writes its own to ``OFFLOAD_TEST_SPANS`` (a folder), one
JSON file per process, for the test to read.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import offload
from offload.contrib.metrics import Metrics
from offload.contrib.otel import Tracing

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))

app = offload.App(
    os.environ.get("OFFLOAD_TEST_URL", "sqlite:///offload-test.db"),
    name="observed",
    middleware=[Metrics(), Tracing(tracer_provider=PROVIDER)],
)


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task(retries=0)
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(retries=1, backoff=offload.Backoff(base=0.2, jitter=False))
def flaky(name: str) -> str:
    """Fails its first attempt, succeeds on the retry."""
    if offload.current().attempt == 1:
        raise ConnectionError(f"{name}: first attempt fails")
    return f"{name}: ok"


def span_record(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "links": [
            {"span_id": f"{link.context.span_id:016x}", "attributes": dict(link.attributes or {})}
            for link in span.links
        ],
        "status": span.status.status_code.name,
        "pid": os.getpid(),
    }


def _dump() -> None:
    folder = os.environ.get("OFFLOAD_TEST_SPANS")
    if folder:
        spans = [span_record(span) for span in EXPORTER.get_finished_spans()]
        Path(folder, f"{os.getpid()}.json").write_text(json.dumps(spans, indent=1))


atexit.register(_dump)
