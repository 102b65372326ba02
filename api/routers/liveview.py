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

from api.deps import AppState, app_state, require_camera
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


@router.get("/api/v1/cameras/{camera_id}/liveview")
async def liveview(
    camera_id: str, _: Principal = require_camera("video:live"), state: AppState = Depends(app_state)
) -> dict[str, Any]:
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


@router.get("/media/live/{camera_id}/{file_name}")
async def live_file(
    camera_id: str, file_name: str, principal: Principal = require_camera("video:live"),
    state: AppState = Depends(app_state),
) -> Response:  # fmt: skip
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
