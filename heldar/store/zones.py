"""SQL for zones, zone events, occupancy and the zone engine's resume state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import asyncpg

from heldar.errors import NotFound
from heldar.ids import new_id
from heldar.store.events import insert_event
from heldar.zones.model import OpenVisit, ZoneEvent

Executor = asyncpg.Pool | asyncpg.Connection

ZONE_COLUMNS = (
    "id, camera_id, name, kind, polygon, dwell_seconds, labels, severity, config, enabled, created_at, updated_at"
)
ZONE_EVENT_COLUMNS = (
    'ze.id, ze.camera_id, ze.zone_id, ze.zone_name, ze.track_id, ze.event_type, ze.label, ze."timestamp",'
    " ze.dwell_seconds, ze.synthetic, ze.event_id::text AS event_id, ze.evidence_url, ze.created_at"
)
EDITABLE = ("name", "kind", "polygon", "dwell_seconds", "labels", "severity", "config", "enabled")


# --- zones -------------------------------------------------------------------------------------------


async def create_zone(db: Executor, camera_id: str, fields: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Insert a zone, or return the existing one of that name on that camera; (row, created)."""
    row = await db.fetchrow(
        "INSERT INTO zones (id, camera_id, name, kind, polygon, dwell_seconds, labels, severity, config, enabled)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        f" ON CONFLICT (camera_id, name) DO NOTHING RETURNING {ZONE_COLUMNS}",
        new_id("zone"),
        camera_id,
        fields["name"],
        fields["kind"],
        fields["polygon"],
        float(fields.get("dwell_seconds") or 0.0),
        list(fields.get("labels") or []),
        fields.get("severity") or "info",
        dict(fields.get("config") or {}),
        bool(fields.get("enabled", True)),
    )
    if row is not None:
        return dict(row), True
    existing = await db.fetchrow(
        f"SELECT {ZONE_COLUMNS} FROM zones WHERE camera_id = $1 AND name = $2", camera_id, fields["name"]
    )
    assert existing is not None
    return dict(existing), False


async def list_zones(db: Executor, camera_id: str, *, enabled_only: bool = False) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {ZONE_COLUMNS} FROM zones WHERE camera_id = $1 AND (NOT $2 OR enabled) ORDER BY name",
        camera_id,
        enabled_only,
    )
    return [dict(r) for r in rows]


async def get_zone(db: Executor, zone_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"SELECT {ZONE_COLUMNS} FROM zones WHERE id = $1", zone_id)
    if row is None:
        raise NotFound(f"zone {zone_id[:64]!r} not found")
    return dict(row)


async def update_zone(db: Executor, zone_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    sets, args = [], [zone_id]
    for name in EDITABLE:
        if name in changes:
            args.append(changes[name])
            sets.append(f"{name} = ${len(args)}")
    if not sets:
        return await get_zone(db, zone_id)
    row = await db.fetchrow(
        f"UPDATE zones SET {', '.join(sets)}, updated_at = now() WHERE id = $1 RETURNING {ZONE_COLUMNS}", *args
    )
    if row is None:
        raise NotFound(f"zone {zone_id[:64]!r} not found")
    return dict(row)


async def delete_zone(db: Executor, zone_id: str) -> None:
    if await db.fetchval("DELETE FROM zones WHERE id = $1 RETURNING id", zone_id) is None:
        raise NotFound(f"zone {zone_id[:64]!r} not found")


# --- zone events, aggregates, occupancy ----------------------------------------------------------------


async def list_zone_events(
    db: Executor,
    camera_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    zone_id: str | None = None,
    event_type: str | None = None,
    track_id: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Newest first, each with ``segment_id`` of the recorded segment covering its time (or None)."""
    rows = await db.fetch(
        f"SELECT {ZONE_EVENT_COLUMNS}, seg.id AS segment_id FROM zone_events ze"
        " LEFT JOIN LATERAL (SELECT s.id FROM segments s WHERE s.camera_id = ze.camera_id"
        '   AND s.start_time <= ze."timestamp" AND s.end_time >= ze."timestamp"'
        "   ORDER BY s.start_time DESC LIMIT 1) seg ON true"
        ' WHERE ze.camera_id = $1 AND ($2::timestamptz IS NULL OR ze."timestamp" >= $2)'
        ' AND ($3::timestamptz IS NULL OR ze."timestamp" <= $3) AND ($4::text IS NULL OR ze.zone_id = $4)'
        " AND ($5::text IS NULL OR ze.event_type = $5) AND ($6::text IS NULL OR ze.track_id = $6)"
        ' ORDER BY ze."timestamp" DESC, ze.id DESC LIMIT $7',
        camera_id,
        start,
        end,
        zone_id,
        event_type,
        track_id,
        limit,
    )
    return [dict(r) for r in rows]


async def zone_event_aggregates(
    db: Executor, camera_id: str, start: datetime, end: datetime, bucket_minutes: int
) -> list[dict[str, Any]]:
    """Counts per zone x event type x bucket (buckets aligned to the epoch), oldest bucket first."""
    rows = await db.fetch(
        "SELECT zone_id, max(zone_name) AS zone_name, event_type,"
        ' to_timestamp(floor(extract(epoch FROM "timestamp") / $4) * $4) AS bucket_start, count(*) AS count'
        ' FROM zone_events WHERE camera_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3'
        " GROUP BY zone_id, event_type, bucket_start ORDER BY bucket_start, zone_id, event_type",
        camera_id,
        start,
        end,
        float(bucket_minutes * 60),
    )
    return [dict(r) for r in rows]


async def occupancy(db: Executor, camera_id: str) -> list[dict[str, Any]]:
    """Every enabled region zone of the camera with its live track count (0 when never written)."""
    rows = await db.fetch(
        "SELECT z.id AS zone_id, z.name AS zone_name, coalesce(o.count, 0) AS count, o.updated_at"
        " FROM zones z LEFT JOIN zone_occupancy o ON o.zone_id = z.id"
        " WHERE z.camera_id = $1 AND z.enabled AND z.kind = 'region' ORDER BY z.name",
        camera_id,
    )
    return [dict(r) for r in rows]


# --- the engine's side ---------------------------------------------------------------------------------


async def engine_resume_state(
    db: Executor, camera_id: str
) -> tuple[datetime | None, dict[str, datetime], list[OpenVisit]]:
    """The camera-wide watermark written before streams (the floor), the watermark of each frame stream,
    and the visits whose last enter/exit is an enter (with whether dwell fired and their stream)."""
    floor = await db.fetchval("SELECT last_frame_at FROM zone_engine_cursors WHERE camera_id = $1", camera_id)
    marks = {
        r["stream"]: r["last_frame_at"]
        for r in await db.fetch("SELECT stream, last_frame_at FROM zone_stream_cursors WHERE camera_id = $1", camera_id)
    }
    rows = await db.fetch(
        "SELECT v.zone_id, v.track_id, v.label, v.\"timestamp\" AS entered_at, coalesce(v.stream, '') AS stream,"
        " EXISTS (SELECT 1 FROM zone_events d WHERE d.camera_id = v.camera_id AND d.zone_id = v.zone_id"
        '   AND d.track_id = v.track_id AND d.event_type = \'dwell\' AND d."timestamp" >= v."timestamp")'
        "   AS dwell_fired"
        " FROM (SELECT DISTINCT ON (zone_id, track_id, coalesce(stream, '')) camera_id, zone_id, track_id, label,"
        '         event_type, stream, "timestamp" FROM zone_events'
        "       WHERE camera_id = $1 AND event_type IN ('enter', 'exit')"
        "       ORDER BY zone_id, track_id, coalesce(stream, ''), \"timestamp\" DESC, event_type DESC) v"
        " JOIN zones z ON z.id = v.zone_id WHERE v.event_type = 'enter'",
        camera_id,
    )
    visits = [
        OpenVisit(r["zone_id"], r["track_id"], r["entered_at"], r["label"], r["dwell_fired"], r["stream"]) for r in rows
    ]
    return floor, marks, visits


async def record_engine_output(
    pool: asyncpg.Pool,
    camera_id: str,
    events: Iterable[ZoneEvent],
    *,
    occupancy_changes: Mapping[str, int] | None = None,
    watermarks: Mapping[str, datetime] | None = None,
) -> list[dict[str, Any]]:
    """One transaction: new zone events (a replayed one is a no-op) each logged as ``zone_<type>`` in
    ``events``; changed occupancy counts; the watermark of each stream given. Returns the rows inserted."""
    inserted: list[dict[str, Any]] = []
    async with pool.acquire() as conn, conn.transaction():
        for ev in events:
            zev_id = new_id("zev")
            got = await conn.fetchval(
                "INSERT INTO zone_events (id, camera_id, zone_id, zone_name, track_id, event_type, label,"
                ' "timestamp", dwell_seconds, synthetic, stream, evidence_url)'
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ' ON CONFLICT (camera_id, zone_id, track_id, event_type, "timestamp") DO NOTHING RETURNING id',
                zev_id,
                ev.camera_id,
                ev.zone_id,
                ev.zone_name,
                ev.track_id,
                ev.event_type,
                ev.label,
                ev.timestamp,
                ev.dwell_seconds,
                ev.synthetic,
                ev.stream or None,
                ev.evidence_url,
            )
            if got is None:
                continue
            payload = {"zone_event_id": zev_id, "zone_id": ev.zone_id, "zone_name": ev.zone_name,
                       "track_id": ev.track_id, "label": ev.label, "dwell_seconds": ev.dwell_seconds,
                       "synthetic": ev.synthetic}  # fmt: skip
            if ev.evidence_url is not None:
                payload["evidence_url"] = ev.evidence_url
            event_id = await insert_event(
                conn, f"zone_{ev.event_type}", camera_id=ev.camera_id, severity=ev.severity, payload=payload,
                timestamp=ev.timestamp,
            )  # fmt: skip
            await conn.execute("UPDATE zone_events SET event_id = $2::uuid WHERE id = $1", zev_id, event_id)
            inserted.append({"id": zev_id, "event_id": event_id, "event": ev})
        for zone_id, count in (occupancy_changes or {}).items():
            await conn.execute(
                "INSERT INTO zone_occupancy (zone_id, camera_id, count, updated_at)"
                " SELECT id, camera_id, $2, now() FROM zones WHERE id = $1"
                " ON CONFLICT (zone_id) DO UPDATE SET count = EXCLUDED.count, updated_at = now()",
                zone_id,
                count,
            )
        if watermarks:
            await conn.execute(
                "INSERT INTO zone_stream_cursors (camera_id, stream, last_frame_at)"
                " SELECT $1, * FROM unnest($2::text[], $3::timestamptz[])"
                " ON CONFLICT (camera_id, stream) DO UPDATE SET last_frame_at ="
                " greatest(zone_stream_cursors.last_frame_at, EXCLUDED.last_frame_at), updated_at = now()",
                camera_id,
                list(watermarks),
                list(watermarks.values()),
            )
    return inserted
