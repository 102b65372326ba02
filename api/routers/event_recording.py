"""Event-mode recording: ``POST /api/v1/cameras/{camera_id}/record-trigger``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg
from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AppState, app_state, audit, get_pool, require_camera
from heldar.auth.capabilities import Principal
from heldar.store import event_recording

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["event-recording"])


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("manual", min_length=1, max_length=200, description="Why (stored with the window).")
    at: datetime | None = Field(None, description="Event time (RFC 3339); default now")


class TriggerView(BaseModel):
    camera_id: str = Field(description="The camera.")
    triggered: bool = Field(description="True when a window was opened or extended.")
    window_id: str = Field(description="The event window's id.")
    window_start: datetime = Field(description="Start of the kept window, pre-roll included (UTC).")
    window_end: datetime = Field(description="End of the kept window, post-roll included (UTC).")
    pre_roll_seconds: float = Field(description="Pre-roll, seconds.")
    post_roll_seconds: float = Field(description="Post-roll, seconds.")
    pre_roll_segments_kept: int = Field(description="Already-recorded segments kept for the pre-roll.")


@router.post("/{camera_id}/record-trigger", response_model=TriggerView, summary="Trigger an event recording")
async def record_trigger(
    camera_id: str,
    body: TriggerRequest | None = Body(None),
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> TriggerView:
    """Keep this camera's footage from ``at - pre_roll`` to ``at + post_roll`` (event mode only; 400 otherwise)."""
    request = body or TriggerRequest()
    at = request.at or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    result = await event_recording.trigger(pool, camera_id, at, f"manual: {request.reason}")
    detail = {"camera_id": camera_id, "reason": request.reason, "window_end": result["window_end"].isoformat()}
    await audit(state, principal, "record_trigger", "camera", camera_id, detail)
    return TriggerView(**result)
