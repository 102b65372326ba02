"""Reads of the kernel event log for the API, the live stream and webhook delivery.

``camera_scope`` (a set of camera ids, or None for every camera) confines rows to those cameras; rows
without a camera are hidden from a scoped reader.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection

EVENT_COLUMNS = 'seq, id::text AS id, camera_id, event_type, severity, "timestamp", payload, created_at'


@dataclass(frozen=True)
class EventFilter:
    camera_id: str | None = None
    event_type: str | None = None
    severity: str | None = None  # exact
    min_severity: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    camera_scope: Collection[str] | None = None


_SEVERITY_RANK_SQL = "(CASE severity WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END)"


def _where(f: EventFilter, first: int) -> tuple[str, list[Any]]:
    """The filter as SQL with placeholders numbered from ``first``."""
    rank = {"info": 0, "warning": 1, "critical": 2}.get(f.min_severity or "info", 0)
    scope = sorted(f.camera_scope) if f.camera_scope is not None else None
    args: list[Any] = [f.camera_id, f.event_type, f.severity, rank, f.start, f.end, scope]
    n = [first + i for i in range(len(args))]
    sql = (
        f"(${n[0]}::text IS NULL OR camera_id = ${n[0]}) AND (${n[1]}::text IS NULL OR event_type = ${n[1]})"
        f" AND (${n[2]}::text IS NULL OR severity = ${n[2]}) AND {_SEVERITY_RANK_SQL} >= ${n[3]}"
        f' AND (${n[4]}::timestamptz IS NULL OR "timestamp" >= ${n[4]})'
        f' AND (${n[5]}::timestamptz IS NULL OR "timestamp" <= ${n[5]})'
        f" AND (${n[6]}::text[] IS NULL OR camera_id = ANY(${n[6]}::text[]))"
    )
    return sql, args


async def list_events(db: Executor, f: EventFilter, *, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first (by event time, then cursor)."""
    where, args = _where(f, 2)
    rows = await db.fetch(
        f'SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY "timestamp" DESC, seq DESC LIMIT $1',
        limit,
        *args,
    )
    return [dict(r) for r in rows]


async def events_after(db: Executor, after_seq: int, f: EventFilter, *, limit: int = 500) -> list[dict[str, Any]]:
    """Rows past a cursor, in cursor order (catching up a resumed or lagging stream)."""
    where, args = _where(f, 3)
    rows = await db.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND {where} ORDER BY seq LIMIT $2",
        after_seq,
        limit,
        *args,
    )
    return [dict(r) for r in rows]


async def events_by_seq(db: Executor, seqs: Sequence[int], f: EventFilter) -> list[dict[str, Any]]:
    """The rows named by notifications that pass the filter, in cursor order."""
    where, args = _where(f, 2)
    rows = await db.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ANY($1::bigint[]) AND {where} ORDER BY seq",
        list(seqs),
        *args,
    )
    return [dict(r) for r in rows]


async def max_seq(db: Executor) -> int:
    return int(await db.fetchval("SELECT coalesce(max(seq), 0) FROM events"))
