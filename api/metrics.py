"""Prometheus metrics of the API process: build info, registry size, request latency by route."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response

from heldar import __version__

# Methods kept as metric labels; anything else (h11 accepts any token as a method) is "other", so made-up
# methods cannot grow the series set (security F3a).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.build_info = Gauge("heldar_build_info", "Always 1", ["version"], registry=self.registry)
        self.build_info.labels(version=__version__).set(1)
        self.cameras_total = Gauge("heldar_cameras_total", "Registered cameras", registry=self.registry)
        self.request_seconds = Histogram(
            "heldar_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.request_seconds.labels(method_label(request.method), template, str(status)).observe(
                time.perf_counter() - started
            )
