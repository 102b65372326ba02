"""``GET /api/v1/cameras/{camera_id}/integrity?from&to``: re-hash a window's footage and walk its chain.

Needs ``video:playback`` and camera scope. The answer says whether the window verifies and, if not, the first
break (``changed``, ``missing``, ``inserted``, ``relinked``; see :mod:`heldar.media.integrity`). It reads every
file of the window, so it takes a media-job slot; windows are at most 7 days (default: the last 24 h).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, require_camera
from api.media_common import media_slots
from api.openapi import errors, sends
from api.routers.recordings import _window
from heldar.auth.capabilities import Principal
from heldar.errors import BadRequest, Invalid
from heldar.media.integrity import verify_window
from heldar.store import cameras as camera_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["integrity"])

MAX_WINDOW = timedelta(days=7)


class IntegrityBreak(BaseModel):
    """The first place the window's footage does not verify."""

    kind: str = Field(description="`changed` (bytes differ), `missing`, `inserted` (never chained) or `relinked`.")
    chain_seq: int | None = Field(description="The chain position where it breaks.")
    segment_id: str | None = Field(description="The segment concerned.")
    file_name: str | None = Field(description="Its file name.")
    start: datetime | None = Field(description="Its start time (UTC).")
    detail: str = Field(description="What was found, in words.")


class IntegrityReport(BaseModel):
    """Whether a window's recordings are exactly what was indexed, and the first break if not."""

    model_config = {"populate_by_name": True}

    camera_id: str = Field(description="The camera checked.")
    from_: datetime = Field(alias="from", description="Start of the window (UTC).")
    to: datetime = Field(description="End of the window (UTC).")
    ok: bool = Field(description="True when every segment in the window verifies.")
    segments: int = Field(description="Segments in the window.")
    verified: int = Field(description="Segments re-hashed and found intact before any break.")
    first_break: IntegrityBreak | None = Field(description="The first break; null when ok.")
    chain_from: int | None = Field(description="The first chain position in the window.")
    chain_to: int | None = Field(description="The last chain position in the window.")


@router.get(
    "/{camera_id}/integrity",
    summary="Verify a window's recordings",
    responses=sends(IntegrityReport) | errors(400, e503="No media-job slot freed within 10 s; retry shortly."),
)
async def integrity(
    camera_id: str,
    from_: str | None = Query(None, alias="from", description="RFC 3339; default 24 h before to"),
    to: str | None = Query(None, description="RFC 3339; default now"),
    _: Principal = require_camera("video:playback"),
    state: AppState = Depends(app_state),
) -> dict[str, Any]:
    """Re-hashes every file of the window and walks its hash chain: ``ok``, or the first break. Windows of at
    most 7 days (400 otherwise); it reads every file, so it takes a media-job slot."""
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
