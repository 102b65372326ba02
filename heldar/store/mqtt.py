"""SQL for the MQTT sink: its cursor over ``events`` and what Home Assistant discovery describes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from heldar.store.recording import status_state_sql
from heldar.store.schedules import cameras_off_schedule

Executor = asyncpg.Pool | asyncpg.Connection


async def ensure_cursor(db: Executor, sink: str) -> None:
    """A new sink starts at the newest event now (no backlog of history); an existing one keeps its place."""
    await db.execute(
        "INSERT INTO mqtt_cursors (sink, cursor_seq, cursor_at)"
        " VALUES ($1, (SELECT coalesce(max(seq), 0) FROM events), now()) ON CONFLICT (sink) DO NOTHING",
        sink,
    )


async def lock_cursor(conn: asyncpg.Connection, sink: str) -> dict[str, Any] | None:
    """Inside a transaction: the sink's cursor row, locked, or None while another process publishes."""
    row = await conn.fetchrow(
        "SELECT sink, cursor_seq, cursor_at, published, last_error FROM mqtt_cursors WHERE sink = $1"
        " FOR UPDATE SKIP LOCKED",
        sink,
    )
    return dict(row) if row is not None else None


async def get_cursor(db: Executor, sink: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT sink, cursor_seq, cursor_at, published, last_error, updated_at FROM mqtt_cursors WHERE sink = $1",
        sink,
    )
    return dict(row) if row is not None else None


async def save_cursor(
    conn: asyncpg.Connection, sink: str, *, cursor_seq: int, cursor_at: datetime | None, published: int,
    last_error: str | None,
) -> None:  # fmt: skip
    await conn.execute(
        "UPDATE mqtt_cursors SET cursor_seq = greatest(cursor_seq, $2), cursor_at = coalesce($3, cursor_at),"
        " published = published + $4, last_error = $5, updated_at = now() WHERE sink = $1",
        sink,
        cursor_seq,
        cursor_at,
        published,
        last_error,
    )


async def camera_states(db: Executor) -> list[dict[str, Any]]:
    """Every camera with the state the API shows (``disabled`` off schedule or switched off, ``error`` without a
    stream URL, else its recorder's; ``unknown`` before its recorder has reported)."""
    off = await cameras_off_schedule(db)
    rows = await db.fetch(
        f"SELECT c.id, c.name, coalesce({status_state_sql('$1')}, 'unknown') AS state FROM cameras c"
        " LEFT JOIN camera_status s ON s.camera_id = c.id ORDER BY c.id",
        off,
    )
    return [dict(r) for r in rows]


async def zone_occupancy(db: Executor) -> list[dict[str, Any]]:
    """Every enabled region zone with its current occupancy count."""
    rows = await db.fetch(
        "SELECT z.id, z.camera_id, z.name, coalesce(o.count, 0) AS count FROM zones z"
        " LEFT JOIN zone_occupancy o ON o.zone_id = z.id WHERE z.enabled AND z.kind = 'region' ORDER BY z.id"
    )
    return [dict(r) for r in rows]
