"""Recording schedules: ``/api/v1/cameras/{camera_id}/schedules`` (list, create) and
``/api/v1/schedules/{schedule_id}`` (read, edit, delete).

A schedule is ``{days: [0..6] (0 = Monday), time_start, time_end ("HH:MM" or "HH:MM:SS"; time_end may be
"24:00"), timezone?, enabled?}``. It is read in its ``timezone`` (an IANA name), which defaults to
``HELDAR_SCHEDULE_TIMEZONE`` or else the zone of the host the API runs on, and is stored on the row. A
window with ``time_start > time_end`` runs past midnight into the next day. Schedules only matter to
cameras with ``record_mode`` ``scheduled`` or ``scheduled_event``. Reads need ``camera:read``, writes
``registry:manage`` (audited); a schedule of a camera outside a scoped caller's cameras answers 404.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import AppState, app_state, audit, get_pool, require, require_camera
from heldar.auth.capabilities import Principal
from heldar.errors import Invalid, NotFound
from heldar.schedules import Schedule, UnknownZone, check_zone_name, default_zone_name, format_clock, parse_clock
from heldar.store import cameras as camera_store
from heldar.store import schedules as schedule_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["schedules"])

Days = list[int]


class RecordSchedule(BaseModel):
    id: str = Field(description="The schedule's id.")
    camera_id: str = Field(description="The camera.")
    days: Days = Field(description="Weekdays, 0 = Monday ... 6 = Sunday.")
    time_start: str = Field(description="Start, local time `HH:MM:SS`.")
    time_end: str = Field(description="End, local time (`24:00:00` for midnight).")
    timezone: str = Field(description="The IANA zone the times are in.")
    enabled: bool = Field(description="Whether it applies.")
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it was last changed (UTC).")


def _days(value: Days | None) -> Days | None:
    if value is None:
        return None
    if not value:
        raise ValueError("days must name at least one weekday")
    if any(d < 0 or d > 6 for d in value):
        raise ValueError("days are 0 (Monday) to 6 (Sunday)")
    return sorted(set(value))


def _clock(value: str | None, *, end: bool) -> str | None:
    if value is not None:
        parse_clock(value, end=end)
    return value


def _zone(value: str | None) -> str | None:
    if value is not None:
        try:
            check_zone_name(value)
        except UnknownZone as exc:
            raise ValueError(str(exc)) from None
    return value


class ScheduleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: Days | None = Field(None, max_length=7, description="Weekdays, 0 = Monday … 6 = Sunday")
    time_start: str | None = Field(None, max_length=8, description="HH:MM or HH:MM:SS, local time")
    time_end: str | None = Field(None, max_length=8, description="HH:MM or HH:MM:SS (24:00 allowed), local time")
    timezone: str | None = Field(None, max_length=64, description="IANA zone; default the server's")
    enabled: bool | None = Field(None, description="Whether it applies.")

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: Days | None) -> Days | None:
        return _days(value)

    @field_validator("time_start")
    @classmethod
    def _check_start(cls, value: str | None) -> str | None:
        return _clock(value, end=False)

    @field_validator("time_end")
    @classmethod
    def _check_end(cls, value: str | None) -> str | None:
        return _clock(value, end=True)

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str | None) -> str | None:
        return _zone(value)


class ScheduleCreate(ScheduleFields):
    days: Days = Field(..., max_length=7, description="Weekdays, 0 = Monday … 6 = Sunday")
    time_start: str = Field(..., max_length=8, description="HH:MM or HH:MM:SS, local time")
    time_end: str = Field(..., max_length=8, description="HH:MM or HH:MM:SS (24:00 allowed), local time")


class SchedulePatch(ScheduleFields):
    """Any subset; ``null`` leaves a field as it is."""


def _view(row: dict[str, Any]) -> RecordSchedule:
    return RecordSchedule(
        id=row["id"], camera_id=row["camera_id"], days=list(row["days"]), time_start=format_clock(row["start_s"]),
        time_end=format_clock(row["end_s"]), timezone=row["timezone"], enabled=row["enabled"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )  # fmt: skip


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    """The row values of a whole schedule, or a 422 naming what is wrong with the combination."""
    start, end = parse_clock(fields["time_start"]), parse_clock(fields["time_end"], end=True)
    try:
        Schedule(frozenset(fields["days"]), start, end, fields["timezone"], fields["enabled"])
    except ValueError as exc:
        message = str(exc)
        raise Invalid(f"validation failed: {message}", [{"field": "time_end", "message": message}]) from None
    return {"days": fields["days"], "start_s": start, "end_s": end, "timezone": fields["timezone"],
            "enabled": fields["enabled"]}  # fmt: skip


async def _visible(pool: asyncpg.Pool, principal: Principal, schedule_id: str) -> dict[str, Any]:
    row = await schedule_store.get_schedule(pool, schedule_id)
    if not principal.sees_camera(row["camera_id"]):
        raise NotFound(f"schedule {schedule_id[:64]!r} not found")
    return row


async def _after_change(state: AppState, principal: Principal, action: str, row: dict[str, Any], **detail: Any) -> None:
    """Have the supervisor reconcile the camera now (not at its next tick), then audit."""
    if state.supervisor is not None:
        state.supervisor.notify(row["camera_id"])
    await audit(state, principal, action, "schedule", row["id"], {"camera_id": row["camera_id"], **detail})


@router.get("/cameras/{camera_id}/schedules", response_model=list[RecordSchedule])
async def list_schedules(
    camera_id: str, _: Principal = require_camera("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[RecordSchedule]:
    """The camera's recording schedules (used by the `scheduled` and `scheduled_event` record modes)."""
    await camera_store.ensure_camera(pool, camera_id)
    return [_view(r) for r in await schedule_store.list_schedules(pool, camera_id)]


@router.post("/cameras/{camera_id}/schedules", response_model=RecordSchedule, status_code=201)
async def create_schedule(
    camera_id: str,
    body: ScheduleCreate,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> RecordSchedule:
    """Add a weekly window (days, local start and end, IANA zone) to the camera. 422 for an impossible
    combination. Audited."""
    zone = body.timezone or default_zone_name(state.settings.schedule_timezone)
    fields = _checked({**body.model_dump(), "timezone": zone, "enabled": body.enabled is not False})
    row = await schedule_store.create_schedule(pool, camera_id, fields)
    view = _view(row)
    await _after_change(state, principal, "schedule_create", row, days=view.days, time_start=view.time_start,
                        time_end=view.time_end, timezone=view.timezone)  # fmt: skip
    return view


@router.get("/schedules/{schedule_id}", response_model=RecordSchedule)
async def get_schedule(
    schedule_id: str, principal: Principal = require("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> RecordSchedule:
    """One schedule (404 when its camera is outside the credential's scope)."""
    return _view(await _visible(pool, principal, schedule_id))


@router.patch("/schedules/{schedule_id}", response_model=RecordSchedule)
async def patch_schedule(
    schedule_id: str,
    body: SchedulePatch,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> RecordSchedule:
    """Change any subset of a schedule's fields; the result is checked as a whole. Audited."""
    current = _view(await _visible(pool, principal, schedule_id))
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    merged = _checked({**current.model_dump(include={"days", "time_start", "time_end", "timezone", "enabled"}),
                       **changes})  # fmt: skip
    row = await schedule_store.update_schedule(pool, schedule_id, merged)
    await _after_change(state, principal, "schedule_update", row, fields=sorted(changes))
    return _view(row)


@router.delete("/schedules/{schedule_id}", status_code=204)
async def delete_schedule(
    schedule_id: str,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """Remove a schedule. Audited."""
    await _visible(pool, principal, schedule_id)
    row = await schedule_store.delete_schedule(pool, schedule_id)
    await _after_change(state, principal, "schedule_delete", row)
    return Response(status_code=204)
