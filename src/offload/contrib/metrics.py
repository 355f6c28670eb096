"""Prometheus metrics of workers and brokers (``pip install "offload[metrics]"``).

``App(url, middleware=[Metrics()])`` counts every attempt a worker of the
app runs; ``offload worker ... --metrics-port 9100`` serves them (with the
broker's queue depth, lag and live workers) for Prometheus to scrape. The
dashboard serves the broker's part on ``/metrics``.

Per task and queue: ``offload_jobs_started_total``,
``offload_jobs_succeeded_total``, ``offload_jobs_failed_total`` (failed for
good), ``offload_jobs_retried_total`` (an attempt failed, another is
scheduled), ``offload_jobs_delayed_total`` (``offload.Delay``: waiting, no
attempt spent), ``offload_jobs_cancelled_total``,
``offload_job_duration_seconds`` (a histogram of each attempt's run time)
and ``offload_jobs_running``. Per queue and state, read from the broker at
each scrape: ``offload_queue_jobs``, ``offload_queue_lag_seconds`` (how
long the oldest claimable job has waited) and ``offload_workers_alive``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .._brokers._base import Inspector, QueueLag, WorkerListing
from .._context import JobContext
from .._message import Outcome, State
from .._middleware import Middleware

if TYPE_CHECKING:
    from .._worker import Worker

__all__ = ["BrokerCollector", "Metrics", "serve"]

_OUTCOMES = {
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.RETRYING: "retried",
    State.QUEUED: "delayed",
    State.CANCELLED: "cancelled",
}

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics(Middleware):
    """Counts and times every attempt, per task and queue, into a Prometheus registry.

    ``registry``: where the metrics go (default: a registry of this
    middleware's own, so two apps in one process never collide).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        labels = ("task", "queue")
        self.started = Counter(
            "offload_jobs_started", "Attempts started", labels, registry=self.registry
        )
        self.ended = {
            name: Counter(f"offload_jobs_{name}", what, labels, registry=self.registry)
            for name, what in (
                ("succeeded", "Jobs that succeeded"),
                ("failed", "Jobs that failed for good (the dead-letter set)"),
                ("retried", "Attempts that failed with a retry scheduled"),
                ("delayed", "Attempts put back to wait by offload.Delay"),
                ("cancelled", "Jobs cancelled"),
            )
        }
        self.duration = Histogram(
            "offload_job_duration_seconds",
            "Run time of each attempt",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.running = Gauge(
            "offload_jobs_running", "Attempts running now", labels, registry=self.registry
        )
        self._watching = False

    def watch(self, inspector: Inspector) -> None:
        """Also report the broker's queue depth, lag and live workers at each scrape."""
        if not self._watching:
            self.registry.register(BrokerCollector(inspector))
            self._watching = True

    def execute(self, job: JobContext, call_next: Callable[[], Any]) -> Any:
        labels = (job.task, job.queue)
        self.started.labels(*labels).inc()
        running = self.running.labels(*labels)
        running.inc()
        start = time.perf_counter()
        try:
            return call_next()
        finally:
            self.duration.labels(*labels).observe(time.perf_counter() - start)
            running.dec()

    async def aexecute(self, job: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
        labels = (job.task, job.queue)
        self.started.labels(*labels).inc()
        running = self.running.labels(*labels)
        running.inc()
        start = time.perf_counter()
        try:
            return await call_next()
        finally:
            self.duration.labels(*labels).observe(time.perf_counter() - start)
            running.dec()

    def outcome(self, job: JobContext, outcome: Outcome) -> None:
        name = _OUTCOMES.get(outcome.state)
        if name is not None:
            self.ended[name].labels(job.task, job.queue).inc()

    def startup(self, worker: Worker) -> None:
        """Nothing to start: ``serve`` (or your own exporter) publishes the registry."""


class BrokerCollector(Collector):
    """Reads the broker at each scrape: jobs per queue and state, lag, live workers."""

    def __init__(self, inspector: Inspector) -> None:
        self._inspector = inspector

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inspector = self._inspector
        counts = inspector.counts()
        depth = GaugeMetricFamily(
            "offload_queue_jobs",
            "Jobs in the broker, per queue and state",
            labels=["queue", "state"],
        )
        for queue, by_state in sorted(counts.items()):
            for state in State:
                depth.add_metric([queue, state.value], by_state.get(state, 0))
        yield depth
        if isinstance(inspector, QueueLag):
            lag = GaugeMetricFamily(
                "offload_queue_lag_seconds",
                "How long the oldest claimable job of each queue has waited",
                labels=["queue"],
            )
            now = time.time()
            oldest = inspector.oldest_ready()
            for queue in sorted(set(counts) | set(oldest)):  # 0: nothing waits
                lag.add_metric([queue], max(0.0, now - oldest.get(queue, now)))
            yield lag
        if isinstance(inspector, WorkerListing):
            yield GaugeMetricFamily(
                "offload_workers_alive", "Workers whose heartbeat is live", len(inspector.workers())
            )


def serve(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread; the server."""
    from prometheus_client import start_http_server

    server, _ = start_http_server(port, addr=host, registry=registry)
    return server
