"""Zones per camera and what the zone engine wrote about them.

``/api/v1/cameras/{camera_id}/zones`` (list, idempotent create), ``/api/v1/zones/{zone_id}`` (read, edit,
delete), ``/cameras/{camera_id}/zone-events`` (+ ``/aggregates``) and ``/cameras/{camera_id}/zones/occupancy``.
Camera-keyed reads need ``camera:read`` (a camera-scoped key may read its own cameras' zones and zone
events; ``events:read`` is fleet-wide and never granted to scoped keys). Writes need ``registry:manage``
and are audited. A zone outside a scoped caller's cameras answers 404, as if it did not exist.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, audit, get_pool, require, require_camera
from api.openapi import file_response
from heldar.auth.capabilities import Principal
from heldar.errors import Invalid, NotFound
from heldar.store import cameras as camera_store
from heldar.store import zones as zone_store
from heldar.zones.evidence import EvidenceError, evidence_root, resolve_evidence
from heldar.zones.geometry import GeometryError, validate_geometry
from heldar.zones.model import MAX_DWELL_SECONDS, ZONE_EVENT_TYPES, ZoneConfigError, validate_config, validate_labels

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["zones"])

DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
Severity = Literal["info", "warning", "critical"]
Kind = Literal["region", "line"]


class Zone(BaseModel):
    id: str = Field(description="The zone's id (`zon_...`).")
    camera_id: str = Field(description="The camera it is drawn on.")
    name: str = Field(description="A name for people.")
    kind: str = Field(description="`region` (a polygon: enter/exit/dwell) or `line` (crossings).")
    polygon: list[list[float]] = Field(description="Points `[[x, y], ...]`, normalised 0 to 1 on the image.")
    dwell_seconds: float = Field(description="Seconds inside before a `zone_dwell` event; 0: none.")
    labels: list[str] = Field(description="Only detections with these labels count; empty: all.")
    severity: str = Field(description="Severity of its events.")
    config: dict[str, Any] = Field(description="Kind-specific settings (line direction, ...).")
    enabled: bool = Field(description="Whether it raises events.")
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it was last changed (UTC).")


class ZoneCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="A name for people.")
    kind: Kind = Field("region", description="`region` (a polygon: enter/exit/dwell) or `line` (crossings).")
    polygon: list[Any] = Field(
        max_length=512, description="Points `[[x, y], ...]` normalised 0 to 1: 3 or more for a region, 2 for a line."
    )
    dwell_seconds: float = Field(
        0, ge=0, le=MAX_DWELL_SECONDS, description="Seconds inside before a `zone_dwell` event; 0: none."
    )
    labels: list[str] = Field(
        default_factory=list, max_length=64, description="Only detections with these labels count; empty: all."
    )
    severity: Severity = Field("info", description="Severity of its events.")
    config: dict[str, Any] = Field(default_factory=dict, description="Kind-specific settings (line direction, ...).")
    enabled: bool = Field(True, description="Whether it raises events.")


class ZonePatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=128, description="A name for people.")
    kind: Kind | None = Field(None, description="`region` or `line` (the polygon must fit it).")
    polygon: list[Any] | None = Field(None, max_length=512, description="Points `[[x, y], ...]` normalised 0 to 1.")
    dwell_seconds: float | None = Field(
        None, ge=0, le=MAX_DWELL_SECONDS, description="Seconds inside before a `zone_dwell` event; 0: none."
    )
    labels: list[str] | None = Field(
        None, max_length=64, description="Only detections with these labels count; empty: all."
    )
    severity: Severity | None = Field(None, description="Severity of its events.")
    config: dict[str, Any] | None = Field(None, description="Kind-specific settings (line direction, ...).")
    enabled: bool | None = Field(None, description="Whether it raises events.")


class ZoneEventRow(BaseModel):
    id: str = Field(description="The zone event's id.")
    camera_id: str = Field(description="The camera.")
    zone_id: str = Field(description="The zone.")
    zone_name: str = Field(description="Its name.")
    track_id: str = Field(description="The tracked object.")
    event_type: str = Field(description="`enter`, `exit`, `dwell` (regions), `cross_ab` or `cross_ba` (lines).")
    label: str | None = Field(description="The object's label.")
    timestamp: datetime = Field(description="When it happened (UTC).")
    dwell_seconds: float | None = Field(description="Seconds inside (exit and dwell events).")
    synthetic: bool = Field(description="True for an exit the engine inferred (the track was lost).")
    event_id: str | None = Field(description="The matching entry in the event log.")
    evidence_url: str | None = Field(None, description="A JPEG of the moment, when kept.")
    segment_id: str | None = Field(description="The recorded segment holding the moment.")
    created_at: datetime = Field(description="When it was stored (UTC).")


class AggregateBucket(BaseModel):
    zone_id: str = Field(description="The zone.")
    zone_name: str = Field(description="Its name.")
    event_type: str = Field(description="The event type counted.")
    bucket_start: datetime = Field(description="Start of the bucket (UTC).")
    count: int = Field(description="Events in the bucket.")


class Aggregates(BaseModel):
    from_: datetime = Field(serialization_alias="from", description="Start of the window (UTC).")
    to: datetime = Field(description="End of the window (UTC).")
    bucket_minutes: int = Field(description="Bucket length, minutes.")
    buckets: list[AggregateBucket] = Field(
        description="Counts per zone, event type and bucket (empty buckets left out)."
    )


class ZoneCount(BaseModel):
    zone_id: str = Field(description="The zone.")
    zone_name: str = Field(description="Its name.")
    count: int = Field(description="Objects inside now.")
    updated_at: datetime | None = Field(description="When the count last changed.")


class Occupancy(BaseModel):
    zones: list[ZoneCount] = Field(description="Each enabled zone of the camera and how many objects are in it.")


def _invalid(field: str, exc: Exception) -> Invalid:
    return Invalid(f"{field}: {exc}", details=[{"field": field, "message": str(exc), "type": "value_error"}])


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    """Geometry (for the kind), labels and config checked; polygon normalised to [[x, y], ...]."""
    try:
        fields["polygon"] = [list(p) for p in validate_geometry(fields["kind"], fields["polygon"])]
    except GeometryError as exc:
        raise _invalid("polygon", exc) from None
    try:
        fields["labels"] = validate_labels(fields.get("labels"))
    except ZoneConfigError as exc:
        raise _invalid("labels", exc) from None
    try:
        fields["config"] = validate_config(fields.get("config"))
    except ZoneConfigError as exc:
        raise _invalid("config", exc) from None
    return fields


async def _visible_zone(pool: asyncpg.Pool, principal: Principal, zone_id: str) -> dict[str, Any]:
    row = await zone_store.get_zone(pool, zone_id)
    if not principal.sees_camera(row["camera_id"]):
        raise NotFound(f"zone {zone_id[:64]!r} not found")
    return row


async def _audit(state: AppState, principal: Principal, action: str, zone: dict[str, Any], **detail: Any) -> None:
    await audit(
        state, principal, action, "zone", zone["id"], {"camera_id": zone["camera_id"], "name": zone["name"], **detail}
    )


@router.get("/cameras/{camera_id}/zones", response_model=list[Zone])
async def list_zones(
    camera_id: str, _: Principal = require_camera("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[Zone]:
    """The camera's zones, enabled or not."""
    await camera_store.ensure_camera(pool, camera_id)
    return [Zone(**r) for r in await zone_store.list_zones(pool, camera_id)]


@router.post("/cameras/{camera_id}/zones", response_model=Zone, status_code=201,
             responses={200: {"model": Zone, "description": "a zone of that name already exists"}})  # fmt: skip
async def create_zone(
    camera_id: str,
    body: ZoneCreate,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Any:
    """Create; idempotent on (camera, name): an existing zone of that name is answered with 200."""
    await camera_store.ensure_camera(pool, camera_id)
    fields = _validated(body.model_dump())
    row, created = await zone_store.create_zone(pool, camera_id, fields)
    zone = Zone(**row)
    if not created:
        return JSONResponse(zone.model_dump(mode="json"), status_code=200)
    await _audit(state, principal, "zone_create", row, kind=row["kind"], points=len(row["polygon"]))
    return zone


@router.get("/zones/{zone_id}", response_model=Zone)
async def get_zone(
    zone_id: str, principal: Principal = require("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> Zone:
    """One zone (404 when its camera is outside the credential's scope)."""
    return Zone(**await _visible_zone(pool, principal, zone_id))


@router.patch("/zones/{zone_id}", response_model=Zone)
async def patch_zone(
    zone_id: str,
    body: ZonePatch,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Zone:
    """Edit; geometry is re-validated against the resulting kind whenever kind or polygon changes."""
    current = await _visible_zone(pool, principal, zone_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "kind" in changes or "polygon" in changes:
        merged = _validated({"kind": changes.get("kind", current["kind"]),
                             "polygon": changes.get("polygon", current["polygon"]),
                             "labels": changes.get("labels", current["labels"]),
                             "config": changes.get("config", current["config"])})  # fmt: skip
        changes["polygon"] = merged["polygon"]
    if "labels" in changes:
        try:
            changes["labels"] = validate_labels(changes["labels"])
        except ZoneConfigError as exc:
            raise _invalid("labels", exc) from None
    if "config" in changes:
        try:
            changes["config"] = validate_config(changes["config"])
        except ZoneConfigError as exc:
            raise _invalid("config", exc) from None
    row = await zone_store.update_zone(pool, zone_id, changes)
    await _audit(state, principal, "zone_update", row, fields=sorted(changes))
    return Zone(**row)


@router.delete("/zones/{zone_id}", status_code=204)
async def delete_zone(
    zone_id: str,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """Remove a zone; it raises no more events. Audited."""
    current = await _visible_zone(pool, principal, zone_id)
    await zone_store.delete_zone(pool, zone_id)
    await _audit(state, principal, "zone_delete", current)
    return Response(status_code=204)


@router.get("/cameras/{camera_id}/zone-events", response_model=list[ZoneEventRow])
async def list_zone_events(
    camera_id: str,
    start: datetime | None = Query(None, alias="from", description="Only from this time (RFC 3339)."),
    end: datetime | None = Query(None, alias="to", description="Only before this time (RFC 3339)."),
    zone_id: str | None = Query(None, max_length=64, description="Only this zone's events."),
    event_type: Literal["enter", "exit", "dwell", "cross_ab", "cross_ba"] | None = Query(
        None, description="Only events of this type."
    ),
    track_id: str | None = Query(None, max_length=128, description="Only this tracked object's events."),
    limit: int = Query(DEFAULT_LIMIT, description="At most this many (clamped to 1-5000)."),
    _: Principal = require_camera("camera:read"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[ZoneEventRow]:
    """Newest first, each with ``segment_id`` of the covering recorded segment; ``limit`` 1-5000."""
    assert event_type is None or event_type in ZONE_EVENT_TYPES
    await camera_store.ensure_camera(pool, camera_id)
    rows = await zone_store.list_zone_events(pool, camera_id, start=start, end=end, zone_id=zone_id,
                                             event_type=event_type, track_id=track_id,
                                             limit=max(1, min(limit, MAX_LIMIT)))  # fmt: skip
    return [ZoneEventRow(**r) for r in rows]


@router.get("/cameras/{camera_id}/zone-events/aggregates", response_model=Aggregates, response_model_by_alias=True)
async def zone_event_aggregates(
    camera_id: str,
    start: datetime | None = Query(None, alias="from", description="Start (RFC 3339); default 24 h before `to`."),
    end: datetime | None = Query(None, alias="to", description="End (RFC 3339); default now."),
    bucket_minutes: int = Query(60, ge=1, le=1440, description="Bucket length, minutes."),
    _: Principal = require_camera("camera:read"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Aggregates:
    """Counts per zone x event type x bucket; the window defaults to the last 24 hours."""
    await camera_store.ensure_camera(pool, camera_id)
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    if start >= end:
        raise Invalid("from must be before to",
                      details=[{"field": "from", "message": "must be before to", "type": "value_error"}])  # fmt: skip
    rows = await zone_store.zone_event_aggregates(pool, camera_id, start, end, bucket_minutes)
    return Aggregates(from_=start, to=end, bucket_minutes=bucket_minutes, buckets=[AggregateBucket(**r) for r in rows])


@router.get("/cameras/{camera_id}/zones/occupancy", response_model=Occupancy)
async def zone_occupancy(
    camera_id: str, _: Principal = require_camera("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> Occupancy:
    """Live track count per enabled region zone, as the zone engine last wrote it."""
    await camera_store.ensure_camera(pool, camera_id)
    return Occupancy(zones=[ZoneCount(**r) for r in await zone_store.occupancy(pool, camera_id)])


# --- evidence frames ---------------------------------------------------------------------------------
media_router = APIRouter(prefix="/media", tags=["zones"])


@media_router.get(
    "/evidence/{camera_id}/{name}",
    response_class=Response,
    summary="Fetch a zone event's evidence frame (JPEG)",
    responses=file_response("image/jpeg", "The frame the zone event was raised on."),
)
async def evidence_frame(
    camera_id: str, name: str, _: Principal = require_camera("video:playback"), state: AppState = Depends(app_state)
) -> Response:
    """The JPEG of a zone event's frame (``evidence_url``); scoped and authorised like recordings."""
    try:
        path = resolve_evidence(evidence_root(state.settings.data_dir), camera_id, name)
    except EvidenceError:
        raise NotFound("no such evidence frame") from None
    headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type="image/jpeg", headers=headers)
