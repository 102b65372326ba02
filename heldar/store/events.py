"""SQL for the kernel event log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection


async def insert_event(
    db: Executor,
    event_type: str,
    *,
    camera_id: str | None = None,
    severity: str = "info",
    payload: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
) -> str:
    event_id = str(uuid.uuid4())
    await db.execute(
        'INSERT INTO events (id, camera_id, event_type, severity, "timestamp", payload)'
        " VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.UUID(event_id),
        camera_id,
        event_type,
        severity,
        timestamp or datetime.now(UTC),
        payload or {},
    )
    return event_id


async def list_events(
    db: Executor, *, camera_id: str | None = None, event_type: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    rows = await db.fetch(
        'SELECT id::text, camera_id, event_type, severity, "timestamp", payload, created_at FROM events'
        " WHERE ($1::text IS NULL OR camera_id = $1) AND ($2::text IS NULL OR event_type = $2)"
        ' ORDER BY "timestamp" DESC LIMIT $3',
        camera_id,
        event_type,
        limit,
    )
    return [dict(r) for r in rows]
