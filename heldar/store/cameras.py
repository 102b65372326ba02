"""SQL for the camera registry and each camera's recorder status row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from heldar.camera_urls import VENDOR_PATHS
from heldar.errors import Conflict, NotFound
from heldar.models.cameras import CAMERA_COLUMNS, CAMERA_PASSWORD, Camera
from heldar.secrets import seal_text
from heldar.store.schedules import cameras_off_schedule

Executor = asyncpg.Pool | asyncpg.Connection

_SELECT = "SELECT * FROM cameras"

# SQL twin of ``Camera.has_stream_url`` over a ``cameras`` row aliased ``c``: an explicit URL for the record
# profile, or a vendor with a URL template and an address.
HAS_STREAM_URL_SQL = (
    "(CASE c.record_stream WHEN 'sub' THEN c.sub_stream_url ELSE c.main_stream_url END IS NOT NULL"
    f" OR (c.vendor IN ({', '.join(repr(v) for v in sorted(VENDOR_PATHS))}) AND c.address IS NOT NULL))"
)
NO_STREAM_URL_CAUSE = "no_stream_url"
NO_STREAM_URL_MESSAGE = "camera has no stream URL to record: set main_stream_url (or an address for its vendor)"


def _camera(row: asyncpg.Record) -> Camera:
    """The stored camera; its password stays sealed (``Camera.clear_password`` opens it where ffmpeg needs it)."""
    return Camera(**dict(row))


def _stored(camera: Camera, column: str) -> object:
    value = getattr(camera, column)
    return seal_text(value, CAMERA_PASSWORD) if column == "password" else value


async def list_cameras(db: Executor, only: Sequence[str] | None = None) -> list[Camera]:
    """All cameras ordered by id; ``only`` restricts to those ids (camera-scoped credentials)."""
    if only is None:
        rows = await db.fetch(f"{_SELECT} ORDER BY id")
    else:
        rows = await db.fetch(f"{_SELECT} WHERE id = ANY($1::text[]) ORDER BY id", list(only))
    return [_camera(r) for r in rows]


async def get_camera(db: Executor, camera_id: str) -> Camera:
    row = await db.fetchrow(f"{_SELECT} WHERE id = $1", camera_id)
    if row is None:
        raise NotFound(f"camera {camera_id!r} not found")
    return _camera(row)


async def ensure_camera(db: Executor, camera_id: str) -> None:
    """Raise ``NotFound`` unless ``camera_id`` is registered (cheaper than loading the row)."""
    if not await db.fetchval("SELECT 1 FROM cameras WHERE id = $1", camera_id):
        raise NotFound(f"camera {camera_id!r} not found")


async def count_cameras(db: Executor) -> int:
    return int(await db.fetchval("SELECT count(*) FROM cameras"))


async def insert_camera(pool: asyncpg.Pool, camera: Camera) -> Camera:
    values = [_stored(camera, c) for c in CAMERA_COLUMNS]
    cols = ", ".join(CAMERA_COLUMNS)
    params = ", ".join(f"${i}" for i in range(1, len(CAMERA_COLUMNS) + 1))
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(f"INSERT INTO cameras ({cols}) VALUES ({params}) RETURNING *", *values)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"camera {camera.id!r} already exists") from None
        wanted = camera.enabled and camera.record_enabled
        no_url = wanted and not camera.has_stream_url()  # also what readers compute (HAS_STREAM_URL_SQL)
        await conn.execute(
            "INSERT INTO camera_status (camera_id, state, last_error_code, last_error) VALUES ($1, $2, $3, $4)",
            camera.id,
            "error" if no_url else "unknown" if wanted else "disabled",
            NO_STREAM_URL_CAUSE if no_url else None,
            NO_STREAM_URL_MESSAGE if no_url else None,
        )
    return _camera(row)


async def update_camera(db: Executor, camera: Camera) -> Camera:
    settable = [c for c in CAMERA_COLUMNS if c != "id"]
    assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(settable, start=2))
    row = await db.fetchrow(
        f"UPDATE cameras SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *",
        camera.id,
        *[_stored(camera, c) for c in settable],
    )
    if row is None:
        raise NotFound(f"camera {camera.id!r} not found")
    return _camera(row)


async def delete_camera(db: Executor, camera_id: str) -> None:
    result = await db.execute("DELETE FROM cameras WHERE id = $1", camera_id)
    if result.endswith(" 0"):
        raise NotFound(f"camera {camera_id!r} not found")


async def camera_ids_to_record(db: Executor, now: datetime | None = None) -> dict[str, Any]:
    """id → updated_at of every camera that should be recording at ``now`` (default: the current time):
    enabled and record_enabled, and for ``record_mode = 'scheduled'`` inside (or just before) a schedule
    window. The value never depends on the schedules, so a camera mid-window keeps its version. A camera without
    a stream URL is never among them (nothing to record from; it shows ``no_stream_url``)."""
    rows = await db.fetch(
        f"SELECT id, updated_at FROM cameras c WHERE enabled AND record_enabled AND {HAS_STREAM_URL_SQL} ORDER BY id"
    )
    off = set(await cameras_off_schedule(db, now)) if rows else set()
    return {r["id"]: r["updated_at"] for r in rows if r["id"] not in off}


async def segment_lengths(db: Executor) -> dict[str, int]:
    """id → configured segment length of every camera (for the metrics' staleness rules)."""
    rows = await db.fetch("SELECT id, segment_seconds FROM cameras")
    return {r["id"]: int(r["segment_seconds"]) for r in rows}
