"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import AppState, app_state, public, require_fleet
from heldar.store import cameras as camera_store

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[public()])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", dependencies=[public()])
async def readyz(state: AppState = Depends(app_state)) -> JSONResponse:
    checks: dict[str, bool] = {"database": False, "ray": False}
    if state.pool is not None:
        try:
            async with asyncio.timeout(2.0):
                await state.pool.fetchval("SELECT 1")
            checks["database"] = True
        except Exception:
            checks["database"] = False
    if state.supervisor is not None:
        checks["ray"] = await state.supervisor.ping(timeout=2.0)
    failing = [name for name, ok in checks.items() if not ok]
    if failing:
        return JSONResponse(
            {"ready": False, "reason": ",".join(failing), "checks": checks},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return JSONResponse({"ready": True, "checks": checks})


@router.get("/metrics", dependencies=[require_fleet("system:read")])
async def metrics(request: Request, state: AppState = Depends(app_state)) -> PlainTextResponse:
    api_metrics = request.app.state.metrics
    if state.pool is not None:
        try:
            async with asyncio.timeout(2.0):
                api_metrics.cameras_total.set(await camera_store.count_cameras(state.pool))
        except Exception:
            pass  # the gauge keeps its last value; /readyz reports the outage
    body = generate_latest(api_metrics.registry)
    for collect in state.extras.get("metric_sources", []):
        body += await collect()
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
