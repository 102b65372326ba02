"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, public, require_fleet
from api.openapi import sends
from heldar.readiness import RecorderCounts, assess
from heldar.store import cameras as camera_store
from heldar.store import readiness as readiness_store

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    """The process answers."""

    status: str = Field(description="Always `ok`.")


class SupervisorPing(BaseModel):
    """What the supervisor answered."""

    reachable: bool = Field(description="Whether the supervisor answered its ping.")
    role: str | None = Field(description="Its role (`leader`, `standby`); null when unreachable.")
    loops: dict[str, Any] = Field(description="Its control loops and how recently each ran.")


class Readiness(BaseModel):
    """Whether this process should get traffic, and why not."""

    ready: bool = Field(description="True when every check passes.")
    reason: str | None = Field(None, description="Comma-separated failing checks (`database`, `supervisor`, ...).")
    details: dict[str, str] | None = Field(None, description="Why each failing check failed, by check.")
    checks: dict[str, bool] = Field(description="Each check and whether it passed.")
    supervisor: SupervisorPing = Field(description="The supervisor check: its ping answer.")
    required_pct: float = Field(
        description="Share of cameras that must record, percent (`HELDAR_READYZ_MIN_RECORDING_PERCENT`)."
    )
    recording_pct: float | None = Field(None, description="Share of expected cameras recording now, percent.")
    recording: int | None = Field(None, description="Cameras recording now.")
    expected: int | None = Field(None, description="Cameras expected to record (enabled, recording on).")


@router.get("/healthz", dependencies=[public()], response_model=Liveness, summary="Liveness probe")
async def healthz() -> dict[str, str]:
    """200 while the process serves HTTP; checks nothing else (use ``/readyz`` for dependencies)."""
    return {"status": "ok"}


CHECK_TIMEOUT_S = 2.0


async def _database(state: AppState) -> tuple[bool, str | None, RecorderCounts | None]:
    if state.pool is None:
        return False, "not connected", None
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await readiness_store.database_answers(state.pool)
            counts = await readiness_store.recorder_counts(state.pool)
    except TimeoutError:
        return False, "timed out", None
    except Exception as exc:
        return False, exc.__class__.__name__, None
    return True, None, counts


async def _supervisor(state: AppState) -> tuple[dict[str, Any] | None, str | None]:
    if state.supervisor is None:
        return None, "not linked to this API process"
    try:
        answer = await state.supervisor.call("ping", timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        return None, "timed out"
    except LookupError:
        return None, "not running"
    except Exception as exc:
        return None, exc.__class__.__name__
    return (dict(answer), None) if isinstance(answer, dict) else (None, "malformed ping answer")


@router.get(
    "/readyz",
    dependencies=[public()],
    response_model=None,
    summary="Readiness probe",
    responses=sends(Readiness, description="Ready.")
    | {
        503: {
            "model": Readiness,
            "description": "Not ready; `reason` and `details` say why. Sent with `Retry-After`.",
            "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
        }
    },
)
async def readyz(state: AppState = Depends(app_state)) -> JSONResponse:
    """200 when the database answers, the supervisor's loops run and (with
    ``HELDAR_READYZ_MIN_RECORDING_PERCENT``) enough cameras record; else 503 whose ``reason`` names each
    failing check (``database``, ``supervisor``, ``insufficient_recorders``) and ``details`` says why."""
    (db_ok, db_error, counts), (ping, ping_error) = await asyncio.gather(_database(state), _supervisor(state))
    result = assess(
        database_ok=db_ok,
        database_error=db_error,
        ping=ping,
        ping_error=ping_error,
        required_pct=state.settings.readyz_min_recording_percent,
        recorders=counts,
    )
    if not result.ready:
        return JSONResponse(result.body, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse(result.body)


@router.get(
    "/metrics",
    dependencies=[require_fleet("system:read")],
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request, state: AppState = Depends(app_state)) -> PlainTextResponse:
    """API, camera, perception and storage metrics in the Prometheus text format, for a scraper."""
    api_metrics = request.app.state.metrics
    if state.pool is not None:
        try:
            async with asyncio.timeout(2.0):
                api_metrics.cameras.set(await camera_store.count_cameras(state.pool))
        except Exception:
            pass  # the gauge keeps its last value; /readyz reports the outage
    body = generate_latest(api_metrics.registry)
    for collect in state.extras.get("metric_sources", []):
        body += await collect()
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
