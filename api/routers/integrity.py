"""``GET /api/v1/cameras/{camera_id}/integrity?from&to``: re-hash a window's footage and walk its chain.

Needs ``video:playback`` and camera scope. The answer says whether the window verifies and, if not, the first
break (``changed``, ``missing``, ``inserted``, ``relinked``; see :mod:`heldar.media.integrity`). It reads every
file of the window, so it takes a media-job slot; windows are at most 7 days (default: the last 24 h).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query

from api.deps import AppState, app_state, require_camera
from api.media_common import media_slots
from api.routers.recordings import _window
from heldar.auth.capabilities import Principal
from heldar.errors import BadRequest, Invalid
from heldar.media.integrity import verify_window
from heldar.store import cameras as camera_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["integrity"])

MAX_WINDOW = timedelta(days=7)


@router.get("/{camera_id}/integrity")
async def integrity(
    camera_id: str,
    from_: str | None = Query(None, alias="from", description="RFC 3339; default 24 h before to"),
    to: str | None = Query(None, description="RFC 3339; default now"),
    _: Principal = require_camera("video:playback"),
    state: AppState = Depends(app_state),
) -> dict[str, Any]:
    try:
        start, end = _window(from_, to)
    except Invalid as exc:
        raise BadRequest(exc.message) from None
    if end - start > MAX_WINDOW:
        raise BadRequest("window longer than 7 days")
    assert state.pool is not None
    await camera_store.ensure_camera(state.pool, camera_id)
    async with media_slots(state).slot():
        report = await verify_window(state.pool, state.settings.recordings_root, camera_id, start, end)
    if not report["ok"]:
        logger.warning("integrity: %s %s..%s: %s", camera_id, start, end, report["first_break"])
    return report
