"""SQL for the audit log: one insert, and the filtered newest-first listing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection

_COLUMNS = "id, actor, actor_name, role, action, target_type, target_id, detail, subject_camera_id, created_at"


async def insert_audit(
    db: Executor,
    *,
    entry_id: str,
    actor: str,
    actor_name: str | None,
    role: str | None,
    action: str,
    target_type: str | None,
    target_id: str | None,
    detail: dict[str, Any],
    subject_camera_id: str | None,
) -> None:
    await db.execute(
        f"INSERT INTO audit_log ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())",
        entry_id,
        actor,
        actor_name,
        role,
        action,
        target_type,
        target_id,
        detail,
        subject_camera_id,
    )


async def list_audit(
    db: Executor,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Newest first. ``actor`` matches the principal id or its name."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM audit_log"
        " WHERE ($1::timestamptz IS NULL OR created_at >= $1)"
        " AND ($2::timestamptz IS NULL OR created_at <= $2)"
        " AND ($3::text IS NULL OR actor = $3 OR actor_name = $3)"
        " AND ($4::text IS NULL OR action = $4)"
        " ORDER BY created_at DESC, id DESC LIMIT $5",
        since,
        until,
        actor,
        action,
        limit,
    )
    return [dict(r) for r in rows]
