"""SQL for the media plane: the segments a reader locked, exported clips, HLS playback sessions."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection

_SEGMENT_COLS = "id, camera_id, file_name, start_time, end_time, duration_s, codec, size_bytes, source"
_CLIP_COLS = (
    "id, camera_id, file_name, from_time, to_time, requested_seconds, covered_seconds, gaps, size_bytes,"
    " segment_count, created_by, created_at, expires_at"
)
_SESSION_COLS = "id, camera_id, owner_id, token_hash, lock_id, from_time, to_time, segment_ids, created_at, expires_at"


async def segments_by_ids(db: Executor, camera_id: str, segment_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The camera's segments among ``segment_ids`` (what a read lock holds), oldest first."""
    rows = await db.fetch(
        f"SELECT {_SEGMENT_COLS} FROM segments WHERE camera_id = $1 AND id = ANY($2::text[])"
        " ORDER BY start_time, end_time, id",
        camera_id,
        list(segment_ids),
    )
    return [dict(r) for r in rows]


async def segment_at(db: Executor, camera_id: str, at: datetime) -> dict[str, Any] | None:
    """The segment holding instant ``at`` (the latest-starting one when several overlap)."""
    row = await db.fetchrow(
        f"SELECT {_SEGMENT_COLS} FROM segments WHERE camera_id = $1 AND start_time <= $2 AND end_time > $2"
        " ORDER BY start_time DESC LIMIT 1",
        camera_id,
        at,
    )
    return dict(row) if row else None


# --- clips -------------------------------------------------------------------------------------


def _clip(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get("gaps"), str):
        out["gaps"] = json.loads(out["gaps"])
    return out


async def insert_clip(db: Executor, clip: dict[str, Any], ttl_hours: float) -> dict[str, Any]:
    row = await db.fetchrow(
        f"INSERT INTO media_clips (id, camera_id, file_name, from_time, to_time, requested_seconds, covered_seconds,"
        " gaps, size_bytes, segment_count, created_by, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, now() + make_interval(secs => $12))"
        f" RETURNING {_CLIP_COLS}",
        clip["id"], clip["camera_id"], clip["file_name"], clip["from"], clip["to"], clip["requested_seconds"],
        clip["covered_seconds"], json.dumps(clip["gaps"], default=str), clip["size_bytes"], clip["segment_count"],
        clip.get("created_by"), ttl_hours * 3600.0,
    )  # fmt: skip
    assert row is not None
    return _clip(row)


async def clip_for_file(db: Executor, camera_id: str, file_name: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        f"SELECT {_CLIP_COLS} FROM media_clips WHERE camera_id = $1 AND file_name = $2 AND expires_at > now()",
        camera_id,
        file_name,
    )
    return _clip(row) if row else None


async def take_expired_clips(db: Executor, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Delete up to ``limit`` clip rows expired at ``now`` and return them (the caller unlinks the files)."""
    rows = await db.fetch(
        "DELETE FROM media_clips WHERE id IN (SELECT id FROM media_clips WHERE expires_at <= $1"
        " ORDER BY expires_at LIMIT $2) RETURNING id, camera_id, file_name, size_bytes",
        now,
        limit,
    )
    return [dict(r) for r in rows]


async def clip_file_names(db: Executor) -> set[str]:
    return {r["file_name"] for r in await db.fetch("SELECT file_name FROM media_clips")}


# --- playback sessions -------------------------------------------------------------------------


async def insert_session(db: Executor, session: dict[str, Any]) -> dict[str, Any]:
    row = await db.fetchrow(
        "INSERT INTO playback_sessions (id, camera_id, owner_id, token_hash, lock_id, from_time, to_time,"
        f" segment_ids, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_SESSION_COLS}",
        session["id"], session["camera_id"], session["owner_id"], session["token_hash"], session["lock_id"],
        session["from"], session["to"], list(session["segment_ids"]), session["expires_at"],
    )  # fmt: skip
    assert row is not None
    return dict(row)


async def get_session(db: Executor, session_id: str) -> dict[str, Any] | None:
    """A live (unexpired) session."""
    row = await db.fetchrow(
        f"SELECT {_SESSION_COLS} FROM playback_sessions WHERE id = $1 AND expires_at > now()", session_id
    )
    return dict(row) if row else None


async def delete_session(db: Executor, session_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(f"DELETE FROM playback_sessions WHERE id = $1 RETURNING {_SESSION_COLS}", session_id)
    return dict(row) if row else None


async def delete_expired_sessions(db: Executor) -> int:
    """Expired sessions' rows go (their read locks lapse by themselves at the same database instant)."""
    result = await db.execute("DELETE FROM playback_sessions WHERE expires_at <= now()")
    return int(result.split()[-1])


# --- integrity chain ---------------------------------------------------------------------------

_CHAIN_COLS = "id, file_name, start_time, end_time, source, sha256, chain_seq, chain_hash"


async def lock_chain(conn: asyncpg.Connection, camera_id: str) -> None:
    """Serialise chain appends of one camera (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('heldar-chain:' || $1, 0))", camera_id)


async def chain_head(db: Executor, camera_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT chain_seq, chain_hash FROM segments WHERE camera_id = $1 AND chain_seq IS NOT NULL"
        " ORDER BY chain_seq DESC LIMIT 1",
        camera_id,
    )
    return dict(row) if row else None


async def unchained(db: Executor, camera_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {_CHAIN_COLS} FROM segments WHERE camera_id = $1 AND chain_seq IS NULL AND sha256 IS NOT NULL"
        " ORDER BY created_at, start_time, id LIMIT $2",
        camera_id,
        limit,
    )
    return [dict(r) for r in rows]


async def set_link(db: Executor, segment_id: str, seq: int, chain_hash: str) -> None:
    await db.execute("UPDATE segments SET chain_seq = $2, chain_hash = $3 WHERE id = $1", segment_id, seq, chain_hash)


async def chain_window(db: Executor, camera_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Chain fields of the camera's segments overlapping ``[start, end]`` plus any chain entries between them
    (a deleted row's successors still show where the hole is)."""
    rows = await db.fetch(
        f"SELECT {_CHAIN_COLS} FROM segments WHERE camera_id = $1 AND end_time >= $2 AND start_time <= $3"
        " ORDER BY start_time, id",
        camera_id,
        start,
        end,
    )
    return [dict(r) for r in rows]


async def chain_entry(db: Executor, camera_id: str, seq: int) -> dict[str, Any] | None:
    if seq <= 0:
        return None
    row = await db.fetchrow(
        f"SELECT {_CHAIN_COLS} FROM segments WHERE camera_id = $1 AND chain_seq = $2", camera_id, seq
    )
    return dict(row) if row else None


async def chain_entries(db: Executor, camera_id: str, segment_ids: Sequence[str]) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {_CHAIN_COLS} FROM segments WHERE camera_id = $1 AND id = ANY($2::text[]) ORDER BY start_time, id",
        camera_id,
        list(segment_ids),
    )
    return [dict(r) for r in rows]


# --- signing key -------------------------------------------------------------------------------


async def signing_key(pool: asyncpg.Pool, make: Any) -> tuple[bytes, bytes]:
    """(private, public) raw Ed25519 key of this server, created by ``make()`` on first use."""
    row = await pool.fetchrow("SELECT private_key, public_key FROM media_signing_key WHERE id")
    if row is None:
        private, public = make()
        await pool.execute(
            "INSERT INTO media_signing_key (id, private_key, public_key) VALUES (true, $1, $2) ON CONFLICT DO NOTHING",
            private,
            public,
        )
        row = await pool.fetchrow("SELECT private_key, public_key FROM media_signing_key WHERE id")
    assert row is not None
    return bytes(row["private_key"]), bytes(row["public_key"])


async def prev_chain_hashes(db: Executor, camera_id: str, seqs: Sequence[int]) -> dict[int, str]:
    """seq -> the chain hash of entry seq-1 (the genesis hash for entry 1) for the given entries."""
    from heldar.media.integrity import GENESIS

    wanted = [s - 1 for s in seqs if s and s > 1]
    rows = await db.fetch(
        "SELECT chain_seq, chain_hash FROM segments WHERE camera_id = $1 AND chain_seq = ANY($2::bigint[])",
        camera_id,
        wanted,
    )
    out = {int(r["chain_seq"]) + 1: r["chain_hash"] for r in rows}
    if 1 in seqs:
        out[1] = GENESIS
    return out
