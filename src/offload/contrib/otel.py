"""OpenTelemetry tracing of jobs (``pip install "offload[otel]"``).

``App(url, middleware=[Tracing()])`` makes, with the tracer provider the
application configured (or the one given):

- a PRODUCER span ``{task} publish`` per message as it is enqueued, whose
  context travels in the message's ``meta`` (W3C ``traceparent`` and
  ``tracestate``, through the global propagator), so every broker carries
  it to whichever worker runs the job;
- a CONSUMER span ``{task} process`` per attempt, a child of the producer
  span, current while the task runs (spans the task makes nest under it
  with the thread and asyncio pools); an exception marks it as an error;
- on a retry, a span link from the new attempt to the first one, with the
  attribute ``offload.link = "first attempt"``. The first attempt's span
  context is remembered by the worker process that ran it; a retry that
  lands on another worker links to the producer span instead
  (``offload.link = "publish"``): the broker keeps no span ids of attempts.

Attributes follow the messaging conventions (``messaging.system``
``offload``, ``messaging.destination.name`` the queue,
``messaging.message.id`` the job id) plus ``offload.task`` and
``offload.attempt``.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TracerProvider

from .._context import JobContext
from .._message import Message, Outcome
from .._middleware import Middleware, Store

__all__ = ["Tracing"]

REMEMBERED = 10_000
"""First-attempt span contexts a worker keeps for retries (the oldest are forgotten)."""


class Tracing(Middleware):
    """Spans for enqueues and attempts, with the trace context carried in ``message.meta``."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("offload.contrib.otel", tracer_provider=tracer_provider)
        self._first: collections.OrderedDict[str, SpanContext] = collections.OrderedDict()
        self._lock = threading.Lock()

    def enqueue(self, messages: list[Message], call_next: Store) -> list[str]:
        spans = [self._publish(message) for message in messages]
        try:
            return call_next(messages)
        except Exception as error:
            for span in spans:
                span.record_exception(error)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
            raise
        finally:
            for span in spans:
                span.end()

    def _publish(self, message: Message) -> Span:
        span = self._tracer.start_span(
            f"{message.task} publish",
            kind=SpanKind.PRODUCER,
            attributes={**_attributes(message.task, message.queue, message.id), **_PUBLISH},
        )
        carrier = dict(message.meta or {})
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        message.meta = carrier
        return span

    def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
        with self._attempt(job):
            return call_next()

    async def aexecute(self, job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        with self._attempt(job):
            return await call_next()

    def outcome(self, job: JobContext, outcome: Outcome) -> None:
        if outcome.state.finished:  # no retry to come: forget the first attempt
            with self._lock:
                self._first.pop(job.id, None)

    @contextlib.contextmanager
    def _attempt(self, job: JobContext) -> Iterator[Span]:
        parent = propagate.extract(dict(job.meta))
        attributes: dict[str, str | int] = {
            **_attributes(job.task, job.queue, job.id),
            **_PROCESS,
            "offload.attempt": job.attempt,
        }
        with self._tracer.start_as_current_span(
            f"{job.task} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=self._links(job, parent),
        ) as span:
            if job.attempt <= 1:
                self._remember(job.id, span.get_span_context())
            yield span

    def _links(self, job: JobContext, parent: Any) -> list[Link]:
        if job.attempt <= 1:
            return []
        with self._lock:
            first = self._first.get(job.id)
        if first is not None:
            return [Link(first, {"offload.link": "first attempt"})]
        publish = trace.get_current_span(parent).get_span_context()
        return [Link(publish, {"offload.link": "publish"})] if publish.is_valid else []

    def _remember(self, job_id: str, context: SpanContext) -> None:
        with self._lock:
            self._first[job_id] = context
            while len(self._first) > REMEMBERED:
                self._first.popitem(last=False)


_PUBLISH = {"messaging.operation.type": "send"}
_PROCESS = {"messaging.operation.type": "process"}


def _attributes(task: str, queue: str, job_id: str) -> dict[str, str]:
    return {
        "messaging.system": "offload",
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "offload.task": task,
    }
