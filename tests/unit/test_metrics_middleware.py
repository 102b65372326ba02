"""The HTTP metrics and the auth floor are plain ASGI middleware, and the latency histogram labels what it should."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import StreamingResponse

from api.app import create_app
from api.auth_wiring import AuthFloorMiddleware
from api.metrics import ApiMetrics, HttpMetricsMiddleware
from config import load_settings


def test_the_app_has_no_base_http_middleware(tmp_path: Path) -> None:
    """No ``@app.middleware("http")``: every layer is plain ASGI (no task group per request or chunk)."""
    app = create_app(load_settings(data_dir=tmp_path), "postgresql://u@127.0.0.1:1/x")
    classes = [m.cls for m in app.user_middleware]
    assert not [c for c in classes if isinstance(c, type) and issubclass(c, BaseHTTPMiddleware)], classes
    assert HttpMetricsMiddleware in classes and AuthFloorMiddleware in classes
    # the floor runs before the metrics layer (as before), both inside the request guards
    assert classes.index(AuthFloorMiddleware) < classes.index(HttpMetricsMiddleware)


def _sample(metrics: ApiMetrics, **labels: str) -> float:
    value = metrics.registry.get_sample_value("heldar_http_request_duration_seconds_count", labels)
    return value or 0.0


@pytest.mark.asyncio
async def test_latency_is_labelled_by_route_template_status_and_known_method() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(3):
                yield b"x"

        return StreamingResponse(chunks())

    metrics = ApiMetrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/items/1")).status_code == 200
        assert (await client.get("/items/2")).status_code == 200
        assert (await client.get("/items/x")).status_code == 422
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/stream")).text == "xxx"
        await client.request("BREW", "/items/1")
    assert _sample(metrics, method="GET", route="/items/{item_id}", status="200") == 2
    assert _sample(metrics, method="GET", route="/items/{item_id}", status="422") == 1
    assert _sample(metrics, method="GET", route="unmatched", status="404") == 1
    assert _sample(metrics, method="GET", route="/boom", status="500") == 1
    assert _sample(metrics, method="GET", route="/stream", status="200") == 1  # one sample per response
    assert _sample(metrics, method="other", route="/items/{item_id}", status="405") == 1
