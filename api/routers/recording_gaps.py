"""The persisted gaps ANR acts on: ``/api/v1/cameras/{camera_id}/recording-gaps``.

Not to be confused with ``/gaps``, the coverage holes computed over a window.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, audit, get_pool, require_camera
from heldar.auth.capabilities import Principal
from heldar.errors import Conflict, Unavailable
from heldar.store import cameras as camera_store
from heldar.store import gaps as gap_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["recording-gaps"])

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


class RecordingGap(BaseModel):
    id: str = Field(description="The gap's id.")
    camera_id: str = Field(description="The camera.")
    gap_start: datetime = Field(description="Start of the hole (UTC).")
    gap_end: datetime = Field(description="End of the hole (UTC).")
    gap_seconds: float = Field(description="Its length, seconds.")
    cause: str | None = Field(description="Why recording stopped, when known.")
    fill_state: Literal["pending", "filled", "failed"] = Field(
        description="`pending`, `filled` or `failed` (back-fill)."
    )
    fill_attempts: int = Field(description="Back-fill attempts so far.")
    last_attempt_at: datetime | None = Field(description="When back-fill was last tried.")
    filled_at: datetime | None = Field(description="When it was filled.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    created_at: datetime = Field(description="When the gap was detected (UTC).")


@router.get("/{camera_id}/recording-gaps", response_model=list[RecordingGap])
async def list_recording_gaps(
    camera_id: str,
    state: Literal["pending", "filled", "failed"] | None = Query(None, description="Only gaps in this fill state."),
    limit: int = Query(DEFAULT_LIMIT, description="At most this many (clamped to 1-5000)."),
    _: Principal = require_camera("video:playback"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[RecordingGap]:
    """Persisted gaps, newest ``gap_start`` first; ``limit`` is clamped to 1-5000."""
    await camera_store.ensure_camera(pool, camera_id)
    rows = await gap_store.list_gaps(pool, camera_id, state, max(1, min(limit, MAX_LIMIT)))
    return [RecordingGap(**r) for r in rows]


@router.post("/{camera_id}/recording-gaps/{gap_id}/retry", response_model=RecordingGap)
async def retry_recording_gap(
    camera_id: str,
    gap_id: str,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> RecordingGap:
    """Back to ``pending`` with zero attempts (ANR picks it up on its next sweep); audited."""
    await camera_store.ensure_camera(pool, camera_id)
    row = await gap_store.retry_gap(pool, camera_id, gap_id)
    await _audit(state, principal, "anr_retry_gap", camera_id, gap_id)
    return RecordingGap(**row)


@router.post("/{camera_id}/recording-gaps/{gap_id}/fill-now", response_model=RecordingGap)
async def fill_recording_gap_now(
    camera_id: str,
    gap_id: str,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> RecordingGap:
    """Run one fill attempt now on the camera's recorder and answer the row after it; audited."""
    await camera_store.ensure_camera(pool, camera_id)
    await gap_store.get_gap(pool, camera_id, gap_id)  # 404 before anything runs
    await _audit(state, principal, "anr_fill_now", camera_id, gap_id)
    if state.supervisor is None:
        raise Unavailable("recorders are not reachable from this API process")
    try:
        row = await state.supervisor.call("fill_now", camera_id, gap_id, timeout=4 * 3600 + 120)
    except LookupError as exc:
        raise Conflict(str(exc).split("\n")[-1][:200] or "camera has no running recorder") from None
    except TimeoutError:
        raise Unavailable("no ANR slot came free; try again shortly") from None
    return RecordingGap(**row)


async def _audit(state: AppState, principal: Principal, action: str, camera_id: str, gap_id: str) -> None:
    await audit(state, principal, action, "recording_gap", gap_id, {"camera_id": camera_id})
