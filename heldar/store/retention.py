"""SQL for the retention sweeper: usage, candidates, conditional deletes, row retention, sweep outcomes.

Every footage delete is conditional: ``NOT evidence_locked`` and no live read lock
(``read_lock_until`` unset or past). A reader that locks a row first bumps ``read_lock_until``; a
delete waiting on that row re-checks its WHERE clause against the new version and skips it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.storage.retention import CameraUsage, Candidate

Executor = asyncpg.Pool | asyncpg.Connection

# pg_try_advisory_lock key of the sweeper (two clusters on one database never sweep at once).
LEADER_LOCK_KEY = int.from_bytes(hashlib.sha256(b"heldar.retention.sweeper").digest()[:8], "big", signed=True)

_DELETABLE = "NOT evidence_locked AND (read_lock_until IS NULL OR read_lock_until <= now())"


async def try_leader_lock(conn: asyncpg.Connection) -> bool:
    """Take the sweeper's session-level advisory lock on ``conn`` (False when another holder has it)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY))


async def release_leader_lock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", LEADER_LOCK_KEY)


@dataclass(frozen=True, slots=True)
class CameraFootprint:
    usage: CameraUsage
    retention_hours: int
    segments: int

    @property
    def avg_segment_bytes(self) -> float:
        return self.usage.total_bytes / self.segments if self.segments else 0.0


async def camera_usage(db: Executor) -> list[CameraFootprint]:
    """Footprint of every camera, cameras without footage included."""
    rows = await db.fetch(
        """SELECT c.id, c.retention_hours, c.storage_quota_bytes, coalesce(u.n, 0)::bigint AS n,
                  coalesce(u.total, 0)::bigint AS total, coalesce(l.locked, 0)::bigint AS locked
           FROM cameras c
           LEFT JOIN (SELECT camera_id, count(*) AS n, sum(size_bytes) AS total FROM segments
                      GROUP BY camera_id) u
                  ON u.camera_id = c.id
           LEFT JOIN (SELECT camera_id, sum(size_bytes) AS locked FROM segments WHERE evidence_locked
                      GROUP BY camera_id) l ON l.camera_id = c.id
           ORDER BY c.id"""
    )
    return [
        CameraFootprint(
            CameraUsage(r["id"], int(r["total"]), int(r["locked"]), r["storage_quota_bytes"]),
            int(r["retention_hours"]),
            int(r["n"]),
        )
        for r in rows
    ]


def _candidate(r: asyncpg.Record) -> Candidate:
    return Candidate(r["id"], r["camera_id"], r["start_time"], int(r["size_bytes"]))


async def expired_candidates(db: Executor, camera_id: str, cutoff: datetime, limit: int) -> list[Candidate]:
    """The camera's oldest deletable segments that ended before ``cutoff``."""
    rows = await db.fetch(
        f"SELECT id, camera_id, start_time, size_bytes FROM segments WHERE camera_id = $1 AND {_DELETABLE}"
        " AND end_time < $2 ORDER BY start_time, id LIMIT $3",
        camera_id,
        cutoff,
        limit,
    )
    return [_candidate(r) for r in rows]


async def oldest_candidates(db: Executor, camera_id: str, limit: int) -> list[Candidate]:
    """The camera's ``limit`` oldest segments that are not evidence-locked."""
    rows = await db.fetch(
        f"SELECT id, camera_id, start_time, size_bytes FROM segments WHERE camera_id = $1 AND {_DELETABLE}"
        " ORDER BY start_time, id LIMIT $2",
        camera_id,
        limit,
    )
    return [_candidate(r) for r in rows]


async def delete_segments(conn: asyncpg.Connection, segment_ids: list[str]) -> list[dict[str, Any]]:
    """Delete those of ``segment_ids`` that are still deletable; the full rows that went (for a re-insert)."""
    rows = await conn.fetch(
        f"DELETE FROM segments WHERE id = ANY($1::text[]) AND {_DELETABLE} RETURNING *", segment_ids
    )
    return [dict(r) for r in rows]


async def reinsert_segments(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    """Put back rows deleted earlier in the same transaction (their file could not be removed)."""
    for row in rows:
        cols = list(row)
        params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
        await conn.execute(f"INSERT INTO segments ({', '.join(cols)}) VALUES ({params})", *row.values())


async def delete_missing(conn: asyncpg.Connection, camera_id: str, file_names: list[str]) -> list[dict[str, Any]]:
    """Remove rows whose file is gone (not evidence-locked, not read-locked) and open a gap for each."""
    rows = await conn.fetch(
        f"DELETE FROM segments WHERE camera_id = $1 AND file_name = ANY($2::text[]) AND {_DELETABLE}"
        " RETURNING id, file_name, start_time, end_time, size_bytes",
        camera_id,
        file_names,
    )
    for r in rows:
        if r["end_time"] > r["start_time"]:
            await conn.execute(
                "INSERT INTO recording_gaps (id, camera_id, gap_start, gap_end, gap_seconds, cause)"
                " VALUES ('gap_' || md5(random()::text || clock_timestamp()::text), $1, $2, $3, $4, 'file_missing')"
                " ON CONFLICT (camera_id, gap_start) DO NOTHING",
                camera_id,
                r["start_time"],
                r["end_time"],
                (r["end_time"] - r["start_time"]).total_seconds(),
            )
    return [dict(r) for r in rows]


async def indexed_names_page(
    db: Executor, camera_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[tuple[datetime, str, str]]:
    """(start_time, id, file_name) of a camera's segments in ``(start_time, id)`` order after ``after``.

    Keyset pages on the ``(camera_id, start_time, id)`` index: each page costs its own rows, not a scan.
    """
    rows = await db.fetch(
        "SELECT start_time, id, file_name FROM segments WHERE camera_id = $1"
        " AND ($2::timestamptz IS NULL OR (start_time, id) > ($2::timestamptz, $3::text))"
        " ORDER BY start_time, id LIMIT $4",
        camera_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [(r["start_time"], r["id"], r["file_name"]) for r in rows]


async def indexed_names(db: Executor, camera_id: str, names: list[str]) -> set[str]:
    rows = await db.fetch(
        "SELECT file_name FROM segments WHERE camera_id = $1 AND file_name = ANY($2::text[])", camera_id, names
    )
    return {r["file_name"] for r in rows}


async def camera_ids(db: Executor) -> list[str]:
    return [r["id"] for r in await db.fetch("SELECT id FROM cameras ORDER BY id")]


# --- row retention -----------------------------------------------------------------------------

# (table, time column, extra condition, which horizon): fixed, never from input.
ROW_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("detections", "created_at", "", "detection"),
    ("outbox", "created_at", "", "detection"),
    ("consumer_fanout", "fanned_at", "", "detection"),
    ("zone_events", "created_at", "", "detection"),
    ("events", "created_at", "", "event"),
    ("audit_log", "created_at", "", "event"),
    ("webhook_deliveries", "created_at", "", "event"),
    ("recording_gaps", "created_at", " AND fill_state <> 'pending'", "event"),
    ("retention_sweeps", "finished_at", "", "sweep"),
    ("segment_read_locks", "expires_at", "", "now"),
    ("sessions", "expires_at", "", "now"),
)


async def prune_rows_batch(db: Executor, table: str, column: str, extra: str, cutoff: datetime, batch: int) -> int:
    """Delete up to ``batch`` rows of ``table`` older than ``cutoff``; each call is its own short statement."""
    rule = next((r for r in ROW_RULES if r[0] == table and r[1] == column and r[2] == extra), None)
    if rule is None:
        raise ValueError(f"no row-retention rule for {table}.{column}")
    result = await db.execute(
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {column} < $1{extra} LIMIT $2))",
        cutoff,
        batch,
    )
    return int(result.split()[-1])


# --- overrides and outcomes ---------------------------------------------------------------------


async def get_overrides(db: Executor) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT max_recordings_gb, min_free_disk_gb, updated_by, updated_at FROM retention_overrides WHERE id"
    )
    return dict(row) if row else {"max_recordings_gb": None, "min_free_disk_gb": None}


async def set_overrides(db: Executor, changes: dict[str, float | None], updated_by: str) -> dict[str, Any]:
    """Set (a number) or clear (None) the overrides named in ``changes``; others keep their value."""
    current = await get_overrides(db)
    max_gb = changes.get("max_recordings_gb", current["max_recordings_gb"])
    floor_gb = changes.get("min_free_disk_gb", current["min_free_disk_gb"])
    await db.execute(
        "INSERT INTO retention_overrides (id, max_recordings_gb, min_free_disk_gb, updated_by, updated_at)"
        " VALUES (true, $1, $2, $3, now()) ON CONFLICT (id) DO UPDATE SET max_recordings_gb = $1,"
        " min_free_disk_gb = $2, updated_by = $3, updated_at = now()",
        max_gb,
        floor_gb,
        updated_by,
    )
    return await get_overrides(db)


async def record_sweep(
    db: Executor, started_at: datetime, finished_at: datetime, ok: bool, leader: str, outcome: dict[str, Any]
) -> None:
    await db.execute(
        "INSERT INTO retention_sweeps (started_at, finished_at, ok, leader, outcome) VALUES ($1, $2, $3, $4, $5)",
        started_at,
        finished_at,
        ok,
        leader,
        outcome,
    )


async def last_sweep(db: Executor) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT started_at, finished_at, ok, leader, outcome FROM retention_sweeps ORDER BY finished_at DESC LIMIT 1"
    )
    return dict(row) if row else None


async def add_totals(db: Executor, reason: str, segments: int, size_bytes: int) -> None:
    await db.execute(
        "INSERT INTO retention_totals (reason, segments, bytes) VALUES ($1, $2, $3) ON CONFLICT (reason)"
        " DO UPDATE SET segments = retention_totals.segments + $2, bytes = retention_totals.bytes + $3",
        reason,
        segments,
        size_bytes,
    )


async def totals(db: Executor) -> dict[str, tuple[int, int]]:
    rows = await db.fetch("SELECT reason, segments, bytes FROM retention_totals")
    return {r["reason"]: (int(r["segments"]), int(r["bytes"])) for r in rows}
