"""Recorder status and stream tests: ``/api/v1/health/cameras``, ``/api/v1/cameras/{camera_id}/{health,test}``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, get_pool, require, require_camera
from api.openapi import errors
from heldar.auth.capabilities import Principal
from heldar.camera_urls import parse_cidrs, vet_camera_url
from heldar.errors import BadRequest, NotFound
from heldar.media.stream_test import DEADLINE_S, check_stream
from heldar.probe_limits import ProbeLimiter
from heldar.store import cameras as camera_store
from heldar.store import recording as recording_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["camera-health"])


class CameraStatus(BaseModel):
    """A camera's recorder as its supervisor last reported it."""

    camera_id: str = Field(description="The camera's id.")
    state: str = Field(description="Recorder state (`recording`, `connecting`, `backoff`, `stopped`, `error`, ...).")
    last_segment_at: datetime | None = Field(description="When the newest indexed segment ended; null if none.")
    last_started_at: datetime | None = Field(description="When the recorder last (re)started.")
    last_stop_at: datetime | None = Field(description="When the recorder last stopped or lost the stream.")
    reconnect_count: int = Field(description="Stream reconnects since the recorder started.")
    restart_count: int = Field(description="Recorder restarts by its supervisor.")
    restarts_by_cause: dict[str, int] = Field(description="Restarts counted by cause (`stall`, `exit`, ...).")
    segments_written: int = Field(description="Segments this recorder has written.")
    fps_observed: float | None = Field(description="Frame rate measured on the recorded stream.")
    bitrate_kbps: float | None = Field(description="Bit rate measured on the recorded stream, kbit/s.")
    last_error: str | None = Field(description="The last error, in words (credentials never included).")
    last_error_code: str | None = Field(description="The last error's stable code (`auth_failed`, `timeout`, ...).")
    recorder_pid: int | None = Field(description="The recording ffmpeg's process id, while it runs.")
    recorder_node: str | None = Field(description="The cluster node the recorder runs on.")
    updated_at: datetime = Field(description="When this status was last written.")


class StreamTest(BaseModel):
    """The outcome of opening the camera's record stream once."""

    reachable: bool = Field(description="Whether the stream opened and delivered video.")
    url: str | None = Field(description="The stream URL tried, with any password masked.")
    codec: str | None = Field(None, description="The video codec found (`h264`, `hevc`).")
    width: int | None = Field(None, description="Video width in pixels.")
    height: int | None = Field(None, description="Video height in pixels.")
    error: str | None = Field(None, description="Why the stream could not be opened, in words.")
    error_code: str | None = Field(None, description="A stable code for the failure (`auth_failed`, `timeout`, ...).")


def _status(row: dict[str, Any]) -> CameraStatus:
    by_cause = row.get("restarts_by_cause") or {}
    row = {**row, "restarts_by_cause": {str(k): int(v) for k, v in by_cause.items()}}
    return CameraStatus(**row)


@router.get("/health/cameras", response_model=list[CameraStatus], summary="List every camera's recorder status")
async def list_camera_health(
    principal: Principal = require("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[CameraStatus]:
    """The recorder status of each camera the credential can see (a camera-scoped key sees its own)."""
    only = sorted(principal.camera_scope) if principal.camera_scope is not None else None
    return [_status(row) for row in await recording_store.list_status(pool, only)]


@router.get("/cameras/{camera_id}/health", response_model=CameraStatus, summary="Get one camera's recorder status")
async def camera_health(
    camera_id: str, _: Principal = require_camera("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> CameraStatus:
    """The camera's recorder status; 404 until its recorder has reported once."""
    row = await recording_store.get_status(pool, camera_id)
    if row is None:
        raise NotFound(f"no recorder status for camera {camera_id!r}")
    return _status(row)


_TEST_ROUTE: dict[str, Any] = {
    "response_model": StreamTest,
    "response_model_exclude_none": True,
    "summary": f"Open the camera's record stream once ({DEADLINE_S:g} s limit)",
    "responses": errors(400, e429="A test of this camera, or the maximum of tests at once, is already running."),
}


@router.get("/cameras/{camera_id}/test", operation_id="test_camera_get", **_TEST_ROUTE)
@router.post("/cameras/{camera_id}/test", operation_id="test_camera", **_TEST_ROUTE)
async def test_camera(
    camera_id: str,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> StreamTest:
    """Needs camera management (each test is an ffmpeg and an RTSP session on the camera); one per camera
    and ``HELDAR_CAMERA_PROBE_MAX_CONCURRENT`` in total at once (429 otherwise). 400 when the camera has no
    URL for its record stream or the URL is outside ``HELDAR_CAMERA_ALLOWED_CIDRS``. GET does the same as
    POST (kept for upstream clients)."""
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
