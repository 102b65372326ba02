"""``GET /api/v1/cameras/{camera_id}/snapshot[?at=]``: a JPEG of a recorded instant, or a live grab.

Needs ``video:playback`` and camera scope; ``Cache-Control: no-store``. With ``at`` the segment holding that
instant is read-locked and only its GOP decoded (404 when no footage holds ``at``); without, one frame is read
from the camera's sub stream (its record stream when it has no sub stream; 400 when it has neither, 503 when
the camera gives no frame in time). Both take a media-job slot (503 + Retry-After after 10 s).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.deps import AppState, app_state, require_camera
from api.media_common import media_slots
from api.openapi import errors, file_response
from api.routers.recordings import parse_time
from heldar.auth.capabilities import Principal
from heldar.errors import BadRequest, Invalid, NotFound, Unavailable
from heldar.media import snapshots
from heldar.media.binary import ffmpeg_exe
from heldar.media.segment_names import segment_path
from heldar.store import cameras as camera_store
from heldar.store import media as media_store
from heldar.store.storage import read_locked

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["snapshots"])

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@router.get(
    "/{camera_id}/snapshot",
    response_class=Response,
    summary="Get a JPEG still of a recorded instant or the live stream",
    responses=file_response("image/jpeg", "The JPEG still.")
    | errors(400, e503="The camera gave no frame in time, or no media-job slot freed; retry shortly."),
)
async def snapshot(
    camera_id: str,
    at: str | None = Query(None, description="RFC 3339 instant of recorded footage; absent: a live grab"),
    _: Principal = require_camera("video:playback"),
    state: AppState = Depends(app_state),
) -> Response:
    """With ``at``, the frame of the recording at that instant (only its GOP decoded; 404 when no footage holds
    it); without, one frame grabbed from the camera's sub stream (or record stream; 400 when it has neither).
    ``Cache-Control: no-store``."""
    pool = state.pool
    assert pool is not None
    try:
        instant = parse_time(at, "at")
    except Invalid as exc:
        raise BadRequest(exc.message) from None
    camera = await camera_store.get_camera(pool, camera_id)
    if instant is None:
        url = camera.stream_url("sub") or camera.record_url()
        if url is None:
            raise BadRequest("camera has no stream URL")
        async with media_slots(state).slot():
            try:
                jpeg = await snapshots.live_jpeg(ffmpeg_exe(), url, camera.rtsp_transport)
            except snapshots.GrabFailed:
                raise Unavailable("the camera gave no frame; retry shortly") from None
        return Response(jpeg, media_type="image/jpeg", headers=HEADERS)
    segment = await media_store.segment_at(pool, camera_id, instant)
    if segment is None:
        raise NotFound("no footage at that instant")
    async with media_slots(state).slot():
        async with read_locked(pool, camera_id, holder="snapshot", segment_ids=[segment["id"]]) as lock:
            if not lock.segment_ids:
                raise NotFound("no footage at that instant")
            path = segment_path(state.settings.recordings_root / camera_id, segment["file_name"])
            offset = (instant - segment["start_time"]).total_seconds()
            try:
                jpeg = await asyncio.to_thread(snapshots.recorded_jpeg, path, offset)
            except (snapshots.NoFrame, FileNotFoundError, OSError) as exc:
                logger.warning("snapshot %s at %s: %s", camera_id, instant, exc.__class__.__name__)
                raise NotFound("no decodable footage at that instant") from None
            except TimeoutError:
                raise Unavailable("snapshot decode took too long; retry shortly") from None
    return Response(jpeg, media_type="image/jpeg", headers=HEADERS)
