"""SQL for recording schedules (``camera_schedules``) and the schedule-aware questions other stores ask."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from heldar.errors import Conflict, NotFound
from heldar.ids import new_id
from heldar.models.cameras import Camera
from heldar.schedules import SCHEDULED_MODES, Schedule, expected_recording, next_recording_change, should_record
from heldar.schedules.windows import Interval

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection

MAX_SCHEDULES_PER_CAMERA = 64
SCHEDULE_COLUMNS = "id, camera_id, days, start_s, end_s, timezone, enabled, created_at, updated_at"
EDITABLE = ("days", "start_s", "end_s", "timezone", "enabled")


def to_schedule(row: Mapping[str, Any]) -> Schedule | None:
    """The pure ``Schedule`` of a row; None (and a warning) for a row this host cannot read (a zone its
    tzdata lacks), which then opens no window."""
    try:
        return Schedule(frozenset(row["days"]), row["start_s"], row["end_s"], row["timezone"], row["enabled"],
                        id=row["id"])  # fmt: skip
    except ValueError as exc:
        logger.warning("schedule %s of camera %s ignored: %s", row["id"], row["camera_id"], exc)
        return None


def _duplicate(camera_id: str) -> Conflict:
    return Conflict(f"camera {camera_id!r} already has a schedule with these days, times and zone")


async def create_schedule(pool: asyncpg.Pool, camera_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Insert a schedule; ``NotFound`` for an unknown camera, ``Conflict`` for a duplicate or one too many."""
    async with pool.acquire() as conn, conn.transaction():
        # Lock the camera row: concurrent creates cannot both slip under the per-camera limit.
        if await conn.fetchval("SELECT 1 FROM cameras WHERE id = $1 FOR UPDATE", camera_id) is None:
            raise NotFound(f"camera {camera_id!r} not found")
        count = await conn.fetchval("SELECT count(*) FROM camera_schedules WHERE camera_id = $1", camera_id)
        if count >= MAX_SCHEDULES_PER_CAMERA:
            raise Conflict(f"camera {camera_id!r} already has {MAX_SCHEDULES_PER_CAMERA} schedules")
        try:
            row = await conn.fetchrow(
                "INSERT INTO camera_schedules (id, camera_id, days, start_s, end_s, timezone, enabled)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {SCHEDULE_COLUMNS}",
                new_id("sch"), camera_id, sorted(set(fields["days"])), fields["start_s"], fields["end_s"],
                fields["timezone"], bool(fields.get("enabled", True)),
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise _duplicate(camera_id) from None
    assert row is not None
    return dict(row)


async def list_schedules(db: Executor, camera_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {SCHEDULE_COLUMNS} FROM camera_schedules WHERE camera_id = $1 ORDER BY created_at, id", camera_id
    )
    return [dict(r) for r in rows]


async def get_schedule(db: Executor, schedule_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"SELECT {SCHEDULE_COLUMNS} FROM camera_schedules WHERE id = $1", schedule_id)
    if row is None:
        raise NotFound(f"schedule {schedule_id[:64]!r} not found")
    return dict(row)


async def update_schedule(db: Executor, schedule_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    sets, args = [], [schedule_id]
    for name in EDITABLE:
        if name in changes:
            args.append(sorted(set(changes[name])) if name == "days" else changes[name])
            sets.append(f"{name} = ${len(args)}")
    if not sets:
        return await get_schedule(db, schedule_id)
    try:
        row = await db.fetchrow(
            f"UPDATE camera_schedules SET {', '.join(sets)}, updated_at = now() WHERE id = $1"
            f" RETURNING {SCHEDULE_COLUMNS}",
            *args,
        )
    except asyncpg.UniqueViolationError:
        current = await get_schedule(db, schedule_id)
        raise _duplicate(current["camera_id"]) from None
    if row is None:
        raise NotFound(f"schedule {schedule_id[:64]!r} not found")
    return dict(row)


async def delete_schedule(db: Executor, schedule_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"DELETE FROM camera_schedules WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}", schedule_id)
    if row is None:
        raise NotFound(f"schedule {schedule_id[:64]!r} not found")
    return dict(row)


# --- what recording, status and gaps ask ---------------------------------------------------------------


async def schedules_for(db: Executor, camera_ids: Sequence[str]) -> dict[str, list[Schedule]]:
    """camera id → its readable schedules (disabled ones included; the maths skips them)."""
    out: dict[str, list[Schedule]] = {cid: [] for cid in camera_ids}
    if not camera_ids:
        return out
    rows = await db.fetch(
        f"SELECT {SCHEDULE_COLUMNS} FROM camera_schedules WHERE camera_id = ANY($1::text[])", list(camera_ids)
    )
    for row in rows:
        sched = to_schedule(row)
        if sched is not None:
            out[row["camera_id"]].append(sched)
    return out


async def cameras_off_schedule(
    db: Executor, now: datetime | None = None, only: Sequence[str] | None = None
) -> list[str]:
    """Cameras that would record (enabled, record_enabled) but whose ``scheduled`` mode keeps them off at
    ``now`` (default: the current time); ``only`` restricts the question to those ids."""
    rows = await db.fetch(
        "SELECT id, record_mode FROM cameras WHERE enabled AND record_enabled AND record_mode = 'scheduled'"
        " AND ($1::text[] IS NULL OR id = ANY($1::text[]))",
        None if only is None else list(only),
    )
    if not rows:
        return []
    at = now or datetime.now(UTC)
    by_camera = await schedules_for(db, [r["id"] for r in rows])
    return sorted(r["id"] for r in rows if not should_record(r["record_mode"], by_camera[r["id"]], at))


async def expected_spans(db: Executor, camera: Camera, start: datetime, end: datetime) -> list[Interval]:
    """When ``camera`` should have footage inside ``[start, end)``: after it was registered and, in a
    scheduled mode, inside its schedule windows (``heldar.schedules.expected_recording``)."""
    schedules: list[Schedule] = []
    if camera.record_mode in SCHEDULED_MODES:
        schedules = (await schedules_for(db, [camera.id]))[camera.id]
    return expected_recording(camera.record_mode, schedules, camera.created_at, start, end)


async def next_schedule_change(db: Executor, now: datetime | None = None) -> datetime | None:
    """The next instant at which a ``scheduled`` camera should start or stop (start-early lead included),
    or None when none is due within a week: a supervisor may reconcile then instead of waiting for a tick."""
    rows = await db.fetch("SELECT id FROM cameras WHERE enabled AND record_enabled AND record_mode = 'scheduled'")
    at = now or datetime.now(UTC)
    changes = [
        change
        for schedules in (await schedules_for(db, [r["id"] for r in rows])).values()
        if (change := next_recording_change("scheduled", schedules, at)) is not None
    ]
    return min(changes, default=None)
