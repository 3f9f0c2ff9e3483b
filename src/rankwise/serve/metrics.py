"""Prometheus metrics of one server (its own registry), and the ASGI middleware that counts every request."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rankwise.llm.batching import BatchStats
from rankwise.types import Usage

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServeMetrics:
    """Requests by path and status, latency, documents, prompts, cache hits, and batch shapes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rankwise_http_requests", "HTTP requests by path and status code",
                                ["path", "status"], registry=r)
        self.latency = Histogram("rankwise_http_request_seconds", "HTTP request latency", ["path"],
                                 buckets=_LATENCY, registry=r)
        self.in_flight = Gauge("rankwise_http_requests_in_flight", "HTTP requests being served", registry=r)
        self.documents = Counter("rankwise_documents", "Documents reranked", registry=r)
        self.prompts = Counter("rankwise_prompts", "Prompts the method asked for (cache hits included)",
                               registry=r)
        self.cache_hits = Counter("rankwise_cache_hits", "Prompts answered from the SQLite cache", registry=r)
        self.computed_tokens = Counter("rankwise_computed_tokens", "Tokens run through the model", registry=r)
        self.batch_prompts = Histogram("rankwise_batch_prompts", "Prompts per merged backend call",
                                       buckets=_SIZES, registry=r)
        self.batch_calls = Histogram("rankwise_batch_calls", "Request calls merged into one backend call",
                                     buckets=_SIZES[:7], registry=r)
        self.queue_seconds = Histogram("rankwise_batch_queue_seconds", "Time a call waited before its batch ran",
                                       buckets=_LATENCY, registry=r)
        self.batch_seconds = Histogram("rankwise_batch_run_seconds", "Time of one merged backend call",
                                       buckets=_LATENCY, registry=r)
        self.late_seconds = Histogram("rankwise_batch_late_seconds", "How long after its request's deadline a "
                                      "chunk finished (work computed for nothing)", buckets=_LATENCY, registry=r)
        self.stopped = Counter("rankwise_requests_stopped", "Rerank requests stopped before their ranking was "
                               "done", ["reason"], registry=r)
        self.setting = Gauge("rankwise_setting", "The server's limits and timeouts (seconds, counts)", ["name"],
                             registry=r)

    def report_settings(self, settings: dict[str, float]) -> None:
        for name, value in settings.items():
            self.setting.labels(name).set(value)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_prompts.observe(stats.prompts)
        self.batch_calls.observe(stats.calls)
        self.batch_seconds.observe(stats.run_seconds)
        for wait in stats.queue_seconds:
            self.queue_seconds.observe(wait)
        for late in stats.late_seconds:
            self.late_seconds.observe(late)

    def observe_rerank(self, documents: int, usage: Usage) -> None:
        self.documents.inc(documents)
        self.prompts.inc(usage.calls)
        self.cache_hits.inc(usage.cache_hits)
        self.computed_tokens.inc(usage.computed_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every request (including those refused before routing) by path and final status."""

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics, paths: frozenset[str]):
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.paths else "other"
        status = 500
        start = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
