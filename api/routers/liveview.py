"""Live view: ``GET /api/v1/cameras/{camera_id}/liveview`` and the playlist the recorder writes, ``/media/live/…``.

With ``HELDAR_LIVE_VIEW_ENABLED`` each recorder's ffmpeg writes a rolling HLS playlist (MPEG-TS parts of one
GOP) as a second output of the stream copy it already runs: watching opens no RTSP session and decodes nothing.
Everything needs ``video:live`` and camera scope. Viewers are counted per API process: distinct credentials that
fetched the playlist in the last ``VIEWER_WINDOW_S`` seconds.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, require_camera
from api.openapi import errors, sends
from heldar.auth.capabilities import Principal
from heldar.errors import BadRequest, Forbidden, NotFound
from heldar.media.recorder_command import LIVE_PLAYLIST
from heldar.store import cameras as camera_store

logger = logging.getLogger(__name__)
router = APIRouter(tags=["liveview"])

VIEWER_WINDOW_S = 30.0
STALE_S = 10.0
_PART_RE = re.compile(r"^p\d{1,12}\.ts$")


def _viewers(state: AppState, camera_id: str, principal_id: str | None = None) -> int:
    seen: dict[str, dict[str, float]] = state.extras.setdefault("live_viewers", {})
    now = time.monotonic()
    mine = seen.setdefault(camera_id, {})
    if principal_id is not None:
        mine[principal_id] = now
    for who, at in list(mine.items()):
        if now - at > VIEWER_WINDOW_S:
            del mine[who]
    return len(mine)


class LiveView(BaseModel):
    """Where a camera's live HLS stream is and whether it is current."""

    camera_id: str = Field(description="The camera.")
    name: str = Field(description="The camera's name.")
    hls_url: str = Field(description="The live playlist (`/media/live/...`), for hls.js or Safari.")
    live: bool = Field(description="True when the recorder updated the playlist in the last 10 s.")
    playlist_age_s: float | None = Field(description="Seconds since the playlist was written; null if none.")
    part_seconds: float = Field(description="Length of one playlist part, seconds.")
    viewers: int = Field(description="Distinct credentials that fetched the playlist in the last 30 s (this API).")


@router.get(
    "/api/v1/cameras/{camera_id}/liveview",
    summary="Get a camera's live view",
    responses=sends(LiveView) | errors(e400="Live view is off (`HELDAR_LIVE_VIEW_ENABLED`) or the camera is disabled."),
)
async def liveview(
    camera_id: str, _: Principal = require_camera("video:live"), state: AppState = Depends(app_state)
) -> dict[str, Any]:
    """The live HLS playlist's URL for the camera. The recorder writes it as a second output of the stream copy
    it already runs, so watching opens no extra RTSP session."""
    assert state.pool is not None
    camera = await camera_store.get_camera(state.pool, camera_id)
    if not state.settings.live_view_enabled:
        raise BadRequest("live view is off (HELDAR_LIVE_VIEW_ENABLED)")
    if not camera.enabled:
        raise BadRequest("camera is disabled")
    playlist = state.settings.live_root / camera_id / LIVE_PLAYLIST
    try:
        age = time.time() - os.stat(playlist).st_mtime
    except FileNotFoundError:
        age = None
    return {
        "camera_id": camera_id, "name": camera.name,
        "hls_url": f"/media/live/{quote(camera_id, safe='')}/{LIVE_PLAYLIST}",
        "live": age is not None and age < STALE_S, "playlist_age_s": None if age is None else round(age, 2),
        "part_seconds": 1.0, "viewers": _viewers(state, camera_id),
    }  # fmt: skip


@router.get(
    "/media/live/{camera_id}/{file_name}",
    response_class=Response,
    summary="Fetch the live playlist or one of its parts",
    responses={
        200: {
            "description": "The playlist (`index.m3u8`) or an MPEG-TS part (`p<n>.ts`).",
            "content": {
                "application/vnd.apple.mpegurl": {"schema": {"type": "string"}},
                "video/mp2t": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def live_file(
    camera_id: str, file_name: str, principal: Principal = require_camera("video:live"),
    state: AppState = Depends(app_state),
) -> Response:  # fmt: skip
    """The live HLS playlist the recorder writes, or one of its parts (403 for any other name; 404 while the
    camera is not recording). Fetching the playlist counts the caller as a viewer."""
    if file_name != LIVE_PLAYLIST and not _PART_RE.match(file_name):
        raise Forbidden("refused: not a live playlist or part")
    path = state.settings.live_root / camera_id / file_name
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise NotFound("no live footage (is the camera recording?)") from None
    if file_name == LIVE_PLAYLIST:
        _viewers(state, camera_id, principal.id)
        return FileResponse(path, media_type="application/vnd.apple.mpegurl", stat_result=stat,
                            headers={"Cache-Control": "no-store"})  # fmt: skip
    return FileResponse(path, media_type="video/mp2t", stat_result=stat, headers={"Cache-Control": "private"})
