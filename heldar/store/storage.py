"""SQL for footage holds and the box overview: read locks, evidence locks, incidents, camera purge, /system.

**Read locks** are counted and expire: each holder is one ``segment_read_locks`` row with an expiry, and
``segments.read_lock_until`` carries the latest live expiry of the locks covering the row (what the
retention delete checks). A reader that dies simply stops renewing; its lock lapses at ``expires_at``.
Acquiring bumps ``read_lock_until`` on the rows first, so a retention delete that selected a row before
the lock and deletes it after re-checks the row and skips it; rows a delete removed first are simply not
in the lock (``ReadLock.segment_ids`` says what the reader holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.errors import Conflict, NotFound
from heldar.ids import new_id
from heldar.store.events import insert_event

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection

DEFAULT_READ_LOCK_TTL_S = 300.0
MAX_INCIDENTS = 1000
MAX_INCIDENT_SEGMENTS = 5000

SEGMENT_COLUMNS = (
    "id, camera_id, file_name, start_time, end_time, duration_s, codec, width, height, fps, size_bytes,"
    " source, created_at, evidence_locked, incident_id"
)


# --- read locks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadLock:
    id: str
    camera_id: str
    segment_ids: tuple[str, ...]
    expires_at: datetime


async def acquire_read_lock(
    pool: asyncpg.Pool,
    camera_id: str,
    *,
    holder: str,
    segment_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    ttl_s: float = DEFAULT_READ_LOCK_TTL_S,
) -> ReadLock:
    """Lock the camera's segments named by ``segment_ids``, or overlapping ``[start, end]``, for ``ttl_s``."""
    if segment_ids is None and (start is None or end is None):
        raise ValueError("name segment_ids or a start/end window")
    async with pool.acquire() as conn, conn.transaction():
        expires = await conn.fetchval("SELECT now() + make_interval(secs => $1)", ttl_s)
        if segment_ids is not None:
            rows = await conn.fetch(
                "UPDATE segments SET read_lock_until = greatest(coalesce(read_lock_until, $3), $3)"
                " WHERE camera_id = $1 AND id = ANY($2::text[]) RETURNING id",
                camera_id, list(segment_ids), expires,
            )  # fmt: skip
        else:
            rows = await conn.fetch(
                "UPDATE segments SET read_lock_until = greatest(coalesce(read_lock_until, $4), $4)"
                " WHERE camera_id = $1 AND end_time >= $2 AND start_time <= $3 RETURNING id",
                camera_id, start, end, expires,
            )  # fmt: skip
        ids = tuple(sorted(r["id"] for r in rows))
        lock_id = new_id("rlk")
        await conn.execute(
            "INSERT INTO segment_read_locks (id, camera_id, segment_ids, holder, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            lock_id, camera_id, list(ids), holder[:200], expires,
        )  # fmt: skip
    return ReadLock(lock_id, camera_id, ids, expires)


async def renew_read_lock(pool: asyncpg.Pool, lock_id: str, ttl_s: float = DEFAULT_READ_LOCK_TTL_S) -> bool:
    """Extend a live lock; False when it has lapsed or was released (the reader must lock again)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE segment_read_locks SET expires_at = now() + make_interval(secs => $2)"
            " WHERE id = $1 AND expires_at > now() RETURNING segment_ids, expires_at",
            lock_id,
            ttl_s,
        )
        if row is None:
            return False
        await conn.execute(
            "UPDATE segments SET read_lock_until = greatest(coalesce(read_lock_until, $2), $2)"
            " WHERE id = ANY($1::text[])",
            row["segment_ids"],
            row["expires_at"],
        )
    return True


async def release_read_lock(pool: asyncpg.Pool, lock_id: str) -> None:
    """Drop a lock; each row keeps the latest expiry of the locks still covering it (or none)."""
    async with pool.acquire() as conn, conn.transaction():
        ids = await conn.fetchval("DELETE FROM segment_read_locks WHERE id = $1 RETURNING segment_ids", lock_id)
        if not ids:
            return
        await conn.execute(
            """UPDATE segments s SET read_lock_until = (
                   SELECT max(l.expires_at) FROM segment_read_locks l
                   WHERE l.segment_ids @> ARRAY[s.id] AND l.expires_at > now())
               WHERE s.id = ANY($1::text[])""",
            ids,
        )


async def read_lock_counts(db: Executor, segment_ids: Sequence[str]) -> dict[str, int]:
    """Live read locks per segment (the counted view; 0 for unlocked ones)."""
    rows = await db.fetch(
        "SELECT s.id, (SELECT count(*) FROM segment_read_locks l WHERE l.segment_ids @> ARRAY[s.id]"
        " AND l.expires_at > now()) AS n FROM segments s WHERE s.id = ANY($1::text[])",
        list(segment_ids),
    )
    return {r["id"]: int(r["n"]) for r in rows}


@contextlib.asynccontextmanager
async def read_locked(
    pool: asyncpg.Pool,
    camera_id: str,
    *,
    holder: str,
    segment_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    ttl_s: float = DEFAULT_READ_LOCK_TTL_S,
) -> AsyncIterator[ReadLock]:
    """Hold a read lock for the block, renewing it every ``ttl_s / 3``; released on exit (or it expires)."""
    lock = await acquire_read_lock(
        pool, camera_id, holder=holder, segment_ids=segment_ids, start=start, end=end, ttl_s=ttl_s
    )

    async def renew() -> None:
        while True:
            await asyncio.sleep(ttl_s / 3)
            try:
                await renew_read_lock(pool, lock.id, ttl_s)
            except Exception as exc:  # the lock still holds until it expires; try again next time
                logger.warning("read lock %s: renew failed (%s)", lock.id, exc.__class__.__name__)

    task = asyncio.get_running_loop().create_task(renew())
    try:
        yield lock
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await release_read_lock(pool, lock.id)


# --- evidence and incidents --------------------------------------------------------------------


async def get_segment(db: Executor, segment_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"SELECT {SEGMENT_COLUMNS} FROM segments WHERE id = $1", segment_id)
    if row is None:
        raise NotFound(f"segment {segment_id[:80]!r} not found")
    return dict(row)


async def set_evidence_lock(
    db: Executor, segment_id: str, locked: bool, incident_id: str | None = None
) -> dict[str, Any]:
    """Pin (or unpin) a segment; pinning with ``incident_id`` also tags it; unpinning keeps the tag."""
    row = await db.fetchrow(
        f"UPDATE segments SET evidence_locked = $2, incident_id = coalesce($3, incident_id) WHERE id = $1"
        f" RETURNING {SEGMENT_COLUMNS}",
        segment_id,
        locked,
        incident_id,
    )
    if row is None:
        raise NotFound(f"segment {segment_id[:80]!r} not found")
    return dict(row)


async def set_incident(db: Executor, segment_id: str, incident_id: str | None) -> dict[str, Any]:
    row = await db.fetchrow(
        f"UPDATE segments SET incident_id = $2 WHERE id = $1 RETURNING {SEGMENT_COLUMNS}", segment_id, incident_id
    )
    if row is None:
        raise NotFound(f"segment {segment_id[:80]!r} not found")
    return dict(row)


async def list_incidents(db: Executor, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT incident_id, count(*) AS segment_count, coalesce(sum(size_bytes), 0)::bigint AS total_bytes,"
        " min(start_time) AS oldest_start, max(end_time) AS newest_end,"
        " count(*) FILTER (WHERE evidence_locked) AS locked_count"
        " FROM segments WHERE incident_id IS NOT NULL AND ($1::text[] IS NULL OR camera_id = ANY($1::text[]))"
        " GROUP BY incident_id ORDER BY max(end_time) DESC LIMIT $2",
        None if only is None else list(only),
        MAX_INCIDENTS,
    )
    return [dict(r) for r in rows]


async def incident_segments(db: Executor, incident_id: str, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {SEGMENT_COLUMNS} FROM segments WHERE incident_id = $1"
        " AND ($2::text[] IS NULL OR camera_id = ANY($2::text[])) ORDER BY start_time LIMIT $3",
        incident_id,
        None if only is None else list(only),
        MAX_INCIDENT_SEGMENTS,
    )
    return [dict(r) for r in rows]


# --- camera delete -----------------------------------------------------------------------------


async def delete_camera_rows(pool: asyncpg.Pool, camera_id: str) -> dict[str, int]:
    """Delete a camera and every row about it; ``Conflict`` while any of its segments is evidence-locked.

    Segments, status, gaps, tasks, zones and windows cascade; rows without a foreign key (zone events,
    detections' siblings, events, fan-out claims, read locks) are removed here so a re-used id starts empty.
    """
    async with pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval("SELECT 1 FROM cameras WHERE id = $1 FOR UPDATE", camera_id)
        if not exists:
            raise NotFound(f"camera {camera_id!r} not found")
        locked = await conn.fetchval(
            "SELECT count(*) FROM segments WHERE camera_id = $1 AND evidence_locked", camera_id
        )
        if locked:
            raise Conflict(f"camera {camera_id!r} has {locked} evidence-locked segment(s); unlock them first")
        segments = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(size_bytes), 0)::bigint AS bytes FROM segments WHERE camera_id = $1",
            camera_id,
        )
        for table in ("zone_events", "zone_engine_cursors", "consumer_fanout", "events"):
            await conn.execute(f"DELETE FROM {table} WHERE camera_id = $1", camera_id)
        await conn.execute("DELETE FROM cameras WHERE id = $1", camera_id)
        await insert_event(
            conn, "camera_deleted", payload={"camera_id": camera_id, "segments": int(segments["n"]),
                                             "bytes": int(segments["bytes"])},
        )  # fmt: skip
    return {"segments": int(segments["n"]), "bytes": int(segments["bytes"])}


# --- vanished files noticed on read ------------------------------------------------------------


async def segment_for_file(db: Executor, camera_id: str, file_name: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT id, evidence_locked FROM segments WHERE camera_id = $1 AND file_name = $2", camera_id, file_name
    )
    return dict(row) if row else None


async def forget_missing_file(pool: asyncpg.Pool, camera_id: str, file_name: str) -> bool:
    """A served segment's file is gone: remove its row (a gap opens), write ``segment_missing``."""
    from heldar.store.retention import add_totals, delete_missing

    async with pool.acquire() as conn, conn.transaction():
        rows = await delete_missing(conn, camera_id, [file_name])
        if not rows:
            return False
        size = int(rows[0]["size_bytes"])
        await insert_event(
            conn, "segment_missing", camera_id=camera_id, severity="warning",
            payload={"count": 1, "bytes": size, "files": [file_name], "noticed": "read"},
        )  # fmt: skip
        await add_totals(conn, "missing", 1, size)
    return True


# --- overview ----------------------------------------------------------------------------------


async def storage_overview(db: Executor, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Counts for ``/api/v1/system`` (scoped to ``only`` cameras when given)."""
    scope = None if only is None else list(only)
    row = await db.fetchrow(
        """SELECT
             (SELECT count(*) FROM cameras WHERE $1::text[] IS NULL OR id = ANY($1::text[])) AS cameras_total,
             (SELECT count(*) FROM camera_status s JOIN cameras c ON c.id = s.camera_id
               WHERE c.enabled AND c.record_enabled AND s.state = 'recording'
                 AND ($1::text[] IS NULL OR c.id = ANY($1::text[]))) AS cameras_recording,
             count(*) AS segments_total,
             coalesce(sum(size_bytes), 0)::bigint AS recordings_bytes,
             coalesce(sum(size_bytes) FILTER (WHERE evidence_locked), 0)::bigint AS evidence_locked_bytes,
             count(*) FILTER (WHERE evidence_locked) AS evidence_locked_segments,
             coalesce(sum(size_bytes) FILTER (WHERE end_time >= now() - interval '24 hours'), 0)::bigint
               AS written_last_24h,
             min(start_time) AS oldest_segment, max(end_time) AS newest_segment
           FROM segments WHERE $1::text[] IS NULL OR camera_id = ANY($1::text[])""",
        scope,
    )
    assert row is not None
    return dict(row)


async def evidence_locked_bytes(db: Executor) -> int:
    return int(await db.fetchval("SELECT coalesce(sum(size_bytes), 0)::bigint FROM segments WHERE evidence_locked"))
