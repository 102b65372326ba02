"""SQL for webhook subscriptions, the deliveries ledger, and the notifier's cursor walk."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from heldar.errors import NotFound
from heldar.ids import new_id
from heldar.secrets import open_text, seal_text

WEBHOOK_SECRET = "webhook-secret"  # sealing purpose of webhook_subscriptions.secret

Executor = asyncpg.Pool | asyncpg.Connection

HOOK_COLUMNS = (
    "id, name, url, event_types, min_severity, (secret IS NOT NULL) AS has_secret, enabled, cursor_seq,"
    " cursor_at, attempts, next_attempt_at, last_error, created_by, created_at, updated_at"
)
DELIVERY_COLUMNS = (
    "id, webhook_id, event_id, event_seq, event_type, attempt, ok, status_code, error, gave_up, duration_ms, created_at"
)
EDITABLE = ("name", "url", "event_types", "min_severity", "enabled")


async def create_hook(db: Executor, fields: Mapping[str, Any], created_by: str | None) -> dict[str, Any]:
    """A new subscription whose cursor is the newest event now: delivery starts from "now", no backlog."""
    row = await db.fetchrow(
        "INSERT INTO webhook_subscriptions (id, name, url, event_types, min_severity, secret, enabled, cursor_seq,"
        " cursor_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " (SELECT coalesce(max(seq), 0) FROM events), now(), $8)"
        f" RETURNING {HOOK_COLUMNS}",
        new_id("whk"),
        fields["name"],
        fields["url"],
        list(fields.get("event_types") or ["*"]),
        fields.get("min_severity") or "info",
        seal_text(fields.get("secret"), WEBHOOK_SECRET),
        bool(fields.get("enabled", True)),
        created_by,
    )
    assert row is not None
    return dict(row)


async def list_hooks(db: Executor) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(f"SELECT {HOOK_COLUMNS} FROM webhook_subscriptions ORDER BY created_at")]


async def get_hook(db: Executor, hook_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"SELECT {HOOK_COLUMNS} FROM webhook_subscriptions WHERE id = $1", hook_id)
    if row is None:
        raise NotFound(f"webhook {hook_id[:64]!r} not found")
    return dict(row)


async def get_secret(db: Executor, hook_id: str) -> str | None:
    value = await db.fetchval("SELECT secret FROM webhook_subscriptions WHERE id = $1", hook_id)
    return open_text(value, WEBHOOK_SECRET)


async def update_hook(db: Executor, hook_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Edit the given fields; ``secret`` present in ``changes`` sets it (None clears it)."""
    sets, args = [], [hook_id]
    for name in (*EDITABLE, "secret"):
        if name in changes:
            value = changes[name]
            args.append(
                list(value)
                if name == "event_types"
                else seal_text(value, WEBHOOK_SECRET)
                if name == "secret"
                else value
            )
            sets.append(f"{name} = ${len(args)}")
    if changes.get("enabled"):
        sets.append("attempts = 0, next_attempt_at = NULL")
    if not sets:
        return await get_hook(db, hook_id)
    row = await db.fetchrow(
        f"UPDATE webhook_subscriptions SET {', '.join(sets)}, updated_at = now() WHERE id = $1"
        f" RETURNING {HOOK_COLUMNS}",
        *args,
    )
    if row is None:
        raise NotFound(f"webhook {hook_id[:64]!r} not found")
    return dict(row)


async def delete_hook(db: Executor, hook_id: str) -> None:
    if await db.fetchval("DELETE FROM webhook_subscriptions WHERE id = $1 RETURNING id", hook_id) is None:
        raise NotFound(f"webhook {hook_id[:64]!r} not found")


async def record_delivery(
    db: Executor,
    *,
    delivery_id: str,
    webhook_id: str,
    event_id: str | None,
    event_seq: int | None,
    event_type: str,
    attempt: int,
    ok: bool,
    status_code: int | None,
    error: str | None,
    gave_up: bool = False,
    duration_ms: int | None = None,
) -> None:
    await db.execute(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_seq, event_type, attempt, ok, status_code,"
        " error, gave_up, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        delivery_id, webhook_id, event_id, event_seq, event_type, attempt, ok, status_code, error, gave_up,
        duration_ms,
    )  # fmt: skip


async def list_deliveries(db: Executor, hook_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1"
        " ORDER BY created_at DESC, attempt DESC LIMIT $2",
        hook_id,
        limit,
    )
    return [dict(r) for r in rows]


# --- the notifier's walk ---------------------------------------------------------------------------


async def due_hooks(db: Executor, now: datetime) -> list[str]:
    rows = await db.fetch(
        "SELECT id FROM webhook_subscriptions WHERE enabled AND (next_attempt_at IS NULL OR next_attempt_at <= $1)"
        " ORDER BY id",
        now,
    )
    return [r["id"] for r in rows]


async def lock_hook(conn: asyncpg.Connection, hook_id: str, now: datetime) -> dict[str, Any] | None:
    """Inside a transaction: the subscription with its secret, locked, or None when another process holds
    it, it is disabled, or its retry is not due yet."""
    row = await conn.fetchrow(
        f"SELECT {HOOK_COLUMNS}, secret FROM webhook_subscriptions WHERE id = $1 AND enabled"
        " AND (next_attempt_at IS NULL OR next_attempt_at <= $2) FOR UPDATE SKIP LOCKED",
        hook_id,
        now,
    )
    if row is None:
        return None
    hook = dict(row)
    hook["secret"] = open_text(hook["secret"], WEBHOOK_SECRET)
    return hook


async def lease_hook(conn: asyncpg.Connection, hook_id: str, until: datetime) -> None:
    """Claim a subscription while its POST runs outside any transaction: other sweeps skip it until
    ``until`` (the outcome's ``save_progress`` replaces the lease)."""
    await conn.execute("UPDATE webhook_subscriptions SET next_attempt_at = $2 WHERE id = $1", hook_id, until)


async def events_past(db: Executor, cursor_seq: int, *, settle_s: float, limit: int) -> list[dict[str, Any]]:
    """Events past the cursor, oldest first, written at least ``settle_s`` ago (so a transaction that took
    a lower ``seq`` but commits later is not skipped over)."""
    rows = await db.fetch(
        'SELECT seq, id::text AS id, camera_id, event_type, severity, "timestamp", payload, created_at'
        " FROM events WHERE seq > $1 AND created_at <= now() - make_interval(secs => $2) ORDER BY seq LIMIT $3",
        cursor_seq,
        settle_s,
        limit,
    )
    return [dict(r) for r in rows]


async def save_progress(
    conn: asyncpg.Connection,
    hook_id: str,
    *,
    cursor_seq: int,
    cursor_at: datetime | None,
    attempts: int,
    next_attempt_at: datetime | None,
    last_error: str | None,
) -> None:
    await conn.execute(
        "UPDATE webhook_subscriptions SET cursor_seq = greatest(cursor_seq, $2),"
        " cursor_at = coalesce($3, cursor_at), attempts = $4, next_attempt_at = $5, last_error = $6 WHERE id = $1",
        hook_id,
        cursor_seq,
        cursor_at,
        attempts,
        next_attempt_at,
        last_error,
    )
