"""Evidence locks and incidents: ``/api/v1/segments/{id}/evidence-lock``, ``/segments/{id}/incident``,
``/api/v1/incidents``, ``/api/v1/incidents/{incident_id}/segments``.

An evidence-locked segment is never deleted by any retention step (nor by a camera delete, which answers
409 while one exists). Unlocking keeps the incident tag. Writes need ``registry:manage`` (manager+) and are
audited; a segment of a camera outside the caller's scope reads as 404.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AppState, app_state, audit, get_pool, require
from api.routers.recordings import SegmentView, media_url
from heldar.auth.capabilities import Principal
from heldar.errors import NotFound
from heldar.store import storage as storage_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["evidence"])

INCIDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class EvidenceSegmentView(SegmentView):
    evidence_locked: bool = Field(description="Whether retention keeps it past its age and the caps.")
    incident_id: str | None = Field(description="The incident it is tagged with.")


class LockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident_id: str | None = Field(
        None, pattern=INCIDENT_PATTERN, description="Tag the segment with this incident too."
    )


class IncidentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident_id: str | None = Field(
        ..., pattern=INCIDENT_PATTERN, description="The incident to tag it with; null removes the tag."
    )


class Incident(BaseModel):
    incident_id: str = Field(description="The incident.")
    segment_count: int = Field(description="Segments tagged with it.")
    locked_count: int = Field(description="Of those, evidence-locked.")
    total_bytes: int = Field(description="Their size in bytes.")
    oldest_start: datetime | None = Field(description="Start of the oldest.")
    newest_end: datetime | None = Field(description="End of the newest.")


def _view(row: dict[str, Any]) -> EvidenceSegmentView:
    return EvidenceSegmentView(**row, url=media_url(row["camera_id"], row["file_name"]))


def _scope(principal: Principal) -> list[str] | None:
    return None if principal.camera_scope is None else sorted(principal.camera_scope)


async def _visible(pool: asyncpg.Pool, principal: Principal, segment_id: str) -> dict[str, Any]:
    row = await storage_store.get_segment(pool, segment_id)
    if not principal.sees_camera(row["camera_id"]):
        raise NotFound(f"segment {segment_id[:80]!r} not found")
    return row


@router.post(
    "/segments/{segment_id}/evidence-lock", response_model=EvidenceSegmentView, summary="Evidence-lock a segment"
)
async def lock_segment(
    segment_id: str,
    body: LockBody | None = None,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> EvidenceSegmentView:
    """Keep the segment past its age and the storage caps (optionally tagging an incident). Audited."""
    current = await _visible(pool, principal, segment_id)
    incident = body.incident_id if body is not None else None
    row = await storage_store.set_evidence_lock(pool, segment_id, True, incident)
    logger.info("segment %s evidence-locked by %s", segment_id, principal.name)
    await audit(state, principal, "segment_evidence_lock", "segment", segment_id,
                {"camera_id": current["camera_id"], "incident_id": row["incident_id"]})  # fmt: skip
    return _view(row)


@router.delete(
    "/segments/{segment_id}/evidence-lock", response_model=EvidenceSegmentView, summary="Lift a segment's evidence lock"
)
async def unlock_segment(
    segment_id: str,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> EvidenceSegmentView:
    """Let retention treat the segment normally again. Audited."""
    current = await _visible(pool, principal, segment_id)
    row = await storage_store.set_evidence_lock(pool, segment_id, False)
    await audit(state, principal, "segment_evidence_unlock", "segment", segment_id,
                {"camera_id": current["camera_id"], "incident_id": row["incident_id"]})  # fmt: skip
    return _view(row)


@router.patch(
    "/segments/{segment_id}/incident", response_model=EvidenceSegmentView, summary="Tag a segment with an incident"
)
async def tag_segment(
    segment_id: str,
    body: IncidentBody,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> EvidenceSegmentView:
    """Tag the segment with an incident id, or clear the tag with null. Audited."""
    current = await _visible(pool, principal, segment_id)
    row = await storage_store.set_incident(pool, segment_id, body.incident_id)
    await audit(state, principal, "segment_incident", "segment", segment_id,
                {"camera_id": current["camera_id"], "incident_id": body.incident_id,
                 "previous": current["incident_id"]})  # fmt: skip
    return _view(row)


@router.get("/incidents", response_model=list[Incident], summary="List incidents")
async def incidents(
    principal: Principal = require("events:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[dict[str, Any]]:
    """Every incident tag on the credential's cameras, with its segment count, size and time span."""
    return await storage_store.list_incidents(pool, _scope(principal))


@router.get(
    "/incidents/{incident_id}/segments", response_model=list[EvidenceSegmentView], summary="List an incident's segments"
)
async def incident_segments(
    incident_id: str, principal: Principal = require("video:playback"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[EvidenceSegmentView]:
    """The segments tagged with the incident, on the credential's cameras."""
    rows = await storage_store.incident_segments(pool, incident_id[:128], _scope(principal))
    return [_view(r) for r in rows]
