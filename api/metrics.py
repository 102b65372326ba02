"""Prometheus metrics of the API process: build info, registry size, request latency by route, webhook
deliveries, open event streams, the database pool and the event listener.

Names follow Prometheus' conventions (``promtool check metrics`` is clean on a live scrape): counters end in
``_total``, nothing else does, and values are in base units (seconds, bytes, ratios). The HTTP histogram is
kept by a plain ASGI middleware (no ``BaseHTTPMiddleware`` task group per request or per streamed chunk).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from heldar import __version__

if TYPE_CHECKING:
    from api.deps import AppState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Methods kept as metric labels; anything else (h11 accepts any token as a method) is "other", so made-up
# methods cannot grow the series set (security F3a).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Outcomes of one webhook POST: delivered (2xx), failed (retried later), gave_up (the last attempt failed).
WEBHOOK_OUTCOMES = ("delivered", "failed", "gave_up")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.build_info = Gauge("heldar_build_info", "Always 1", ["version"], registry=self.registry)
        self.build_info.labels(version=__version__).set(1)
        self.cameras = Gauge("heldar_cameras", "Registered cameras", registry=self.registry)
        self.request_seconds = Histogram(
            "heldar_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "heldar_webhook_delivery_attempts",
            "Webhook POSTs by outcome: delivered (2xx), failed (retried later), gave_up (the event is skipped)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_attempts.labels(outcome)
        self.webhook_seconds = Histogram(
            "heldar_webhook_delivery_duration_seconds",
            "Time one webhook POST took (vetting the URL included)",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def webhook_delivery(self, outcome: str, seconds: float) -> None:
        """The webhook notifier's observer: one POST and how it went."""
        self.webhook_attempts.labels(outcome).inc()
        self.webhook_seconds.observe(seconds)

    def install_process_collector(self, state: AppState) -> None:
        """Scrape-time gauges read from this process's live objects (``AppState``)."""
        self.registry.register(ProcessCollector(state))


class ProcessCollector(Collector):
    """The database pool, open event streams and the LISTEN connection, read when scraped."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        pool = self.state.pool
        size = GaugeMetricFamily("heldar_db_pool_connections", "Connections the API process's pool holds open")
        in_use = GaugeMetricFamily("heldar_db_pool_connections_in_use", "Pool connections lent out right now")
        limit = GaugeMetricFamily("heldar_db_pool_max_connections", "Most connections the pool opens")
        if pool is not None:
            size.add_metric([], float(pool.get_size()))
            in_use.add_metric([], float(pool.get_size() - pool.get_idle_size()))
            limit.add_metric([], float(pool.get_max_size()))
        yield from (size, in_use, limit)
        extras = self.state.extras
        streams = GaugeMetricFamily("heldar_event_streams_open", "Open /api/v1/events/stream connections")
        streams.add_metric([], float(sum(extras.get("event_streams_open", {}).values())))
        yield streams
        listener = extras.get("event_broadcaster")
        up = GaugeMetricFamily("heldar_event_listener_up", "1 while the LISTEN connection for new events is open")
        connects = CounterMetricFamily(
            "heldar_event_listener_reconnects", "Times the LISTEN connection was re-opened after it dropped or failed"
        )
        notified = CounterMetricFamily("heldar_event_listener_notifications", "New-event notifications received")
        subscribers = GaugeMetricFamily("heldar_event_listener_subscribers", "In-process subscribers to new events")
        if listener is not None:
            up.add_metric([], 1.0 if listener.connected.is_set() else 0.0)
            connects.add_metric([], float(listener.reconnects))
            notified.add_metric([], float(listener.notifications))
            subscribers.add_metric([], float(listener.subscriber_count))
        yield from (up, connects, notified, subscribers)


class HttpMetricsMiddleware:
    """Observe every HTTP request's latency by method, route template and status (plain ASGI).

    The latency is the time until the response starts (status and headers sent), as before: an event stream
    or a large download is not one multi-hour sample."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            observed = True
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_seconds.labels(method_label(scope.get("method", "")), template, str(status)).observe(
                time.perf_counter() - started
            )

        async def observing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not observed:
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            if not observed:
                observe(500)  # the app raised before answering (the server error handler answers 500)
