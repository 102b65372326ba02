"""Recorder status and stream tests: ``/api/v1/health/cameras``, ``/api/v1/cameras/{camera_id}/{health,test}``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.deps import AppState, app_state, get_pool, require, require_camera
from heldar.auth.capabilities import Principal
from heldar.camera_urls import parse_cidrs, vet_camera_url
from heldar.errors import BadRequest, NotFound
from heldar.media.stream_test import DEADLINE_S, check_stream
from heldar.probe_limits import ProbeLimiter
from heldar.store import cameras as camera_store
from heldar.store import recording as recording_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["camera health"])


class CameraStatus(BaseModel):
    camera_id: str
    state: str
    last_segment_at: datetime | None
    last_started_at: datetime | None
    last_stop_at: datetime | None
    reconnect_count: int
    restart_count: int
    restarts_by_cause: dict[str, int]
    segments_written: int
    fps_observed: float | None
    bitrate_kbps: float | None
    last_error: str | None
    last_error_code: str | None
    recorder_pid: int | None
    recorder_node: str | None
    updated_at: datetime


class StreamTest(BaseModel):
    reachable: bool
    url: str | None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    error_code: str | None = None


def _status(row: dict[str, Any]) -> CameraStatus:
    by_cause = row.get("restarts_by_cause") or {}
    row = {**row, "restarts_by_cause": {str(k): int(v) for k, v in by_cause.items()}}
    return CameraStatus(**row)


@router.get("/health/cameras", response_model=list[CameraStatus])
async def list_camera_health(
    principal: Principal = require("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[CameraStatus]:
    only = sorted(principal.camera_scope) if principal.camera_scope is not None else None
    return [_status(row) for row in await recording_store.list_status(pool, only)]


@router.get("/cameras/{camera_id}/health", response_model=CameraStatus)
async def camera_health(
    camera_id: str, _: Principal = require_camera("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> CameraStatus:
    row = await recording_store.get_status(pool, camera_id)
    if row is None:
        raise NotFound(f"no recorder status for camera {camera_id!r}")
    return _status(row)


@router.api_route(
    "/cameras/{camera_id}/test",
    methods=["GET", "POST"],
    response_model=StreamTest,
    response_model_exclude_none=True,
    summary=f"Open the camera's record stream once ({DEADLINE_S:g} s limit)",
)
async def test_camera(
    camera_id: str,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> StreamTest:
    """Needs camera management (each test is an ffmpeg and an RTSP session on the camera); one per camera
    and ``HELDAR_CAMERA_PROBE_MAX_CONCURRENT`` in total at once (429 otherwise)."""
    limiter: ProbeLimiter = state.extras.setdefault(
        "probe_limiter", ProbeLimiter(state.settings.camera_probe_max_concurrent)
    )
    with limiter.slot(camera_id):
        camera = await camera_store.get_camera(pool, camera_id)
        url = camera.record_url()
        if url is None:
            raise BadRequest(f"camera {camera_id!r} has no {camera.record_stream} stream URL")
        try:
            await vet_camera_url(url, parse_cidrs(state.settings.camera_allowed_cidrs))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        result = await check_stream(url, transport=camera.rtsp_transport, secrets=camera.secrets())
    logger.info("camera %s stream test by %s: reachable=%s", camera_id, principal.name, result.reachable)
    return StreamTest(**result.to_dict())
