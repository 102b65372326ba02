"""SQL for event-mode recording: trigger windows, which segments are kept, pruning the rest."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from heldar.errors import BadRequest, NotFound
from heldar.ids import new_id
from heldar.recording.event_mode import MAX_POST_ROLL_S, MAX_PRE_ROLL_S, clamp
from heldar.store.events import insert_event

Executor = asyncpg.Pool | asyncpg.Connection

# Unkept footage of an event-mode camera lives this long past its pre-roll before it is pruned.
PRUNE_MARGIN_S = 30.0


async def trigger(pool: asyncpg.Pool, camera_id: str, at: datetime, reason: str) -> dict[str, Any]:
    """Open (or extend) an event window on an event-mode camera and keep the footage inside it.

    The window is ``[at - pre_roll, at + post_roll]``: pre-roll comes from segments already on disk (the
    camera records continuously into a short buffer), post-roll from what is recorded next.
    """
    async with pool.acquire() as conn, conn.transaction():
        cam = await conn.fetchrow(
            "SELECT record_mode, pre_roll_seconds, post_roll_seconds FROM cameras WHERE id = $1", camera_id
        )
        if cam is None:
            raise NotFound(f"camera {camera_id!r} not found")
        if cam["record_mode"] not in ("event", "scheduled_event"):
            raise BadRequest(
                f"camera {camera_id!r} is not in an event mode; triggers apply to record_mode 'event'"
                " or 'scheduled_event'"
            )
        pre = clamp(cam["pre_roll_seconds"], 0, MAX_PRE_ROLL_S)
        post = clamp(cam["post_roll_seconds"], 0, MAX_POST_ROLL_S)
        starts, ends = at - timedelta(seconds=pre), at + timedelta(seconds=post)
        window_id = new_id("evw")
        await conn.execute(
            "INSERT INTO event_windows (id, camera_id, starts_at, ends_at, trigger_at, reason)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            window_id, camera_id, starts, ends, at, reason[:200],
        )  # fmt: skip
        kept = await conn.execute(
            "UPDATE segments SET kept = true WHERE camera_id = $1 AND NOT kept AND end_time >= $2 AND start_time <= $3",
            camera_id,
            starts,
            ends,
        )
        window_end = await conn.fetchval(
            "SELECT max(ends_at) FROM event_windows WHERE camera_id = $1 AND starts_at <= $2", camera_id, ends
        )
        payload = {
            "window_id": window_id,
            "reason": reason[:200],
            "trigger_at": at.isoformat(),
            "window_end": window_end.isoformat(),
            "pre_roll_seconds": pre,
            "post_roll_seconds": post,
        }
        await insert_event(conn, "recording_triggered", camera_id=camera_id, payload=payload)
    return {
        "camera_id": camera_id,
        "triggered": True,
        "window_id": window_id,
        "window_start": starts,
        "window_end": window_end,
        "pre_roll_seconds": pre,
        "post_roll_seconds": post,
        "pre_roll_segments_kept": int(kept.split()[-1]),
    }


async def prune_unkept(db: Executor, now: datetime) -> list[tuple[str, str]]:
    """Delete rows of event-mode footage outside every window once past their pre-roll horizon.

    Returns (camera_id, file_name) of the deleted rows; the caller unlinks the files (row first, so a
    trigger that keeps a segment after selection wins: only rows actually deleted lose their file).
    """
    rows = await db.fetch(
        """DELETE FROM segments s USING cameras c
           WHERE s.camera_id = c.id AND c.record_mode IN ('event', 'scheduled_event') AND NOT s.kept
             AND s.end_time < $1::timestamptz
                 - make_interval(secs => c.pre_roll_seconds + c.segment_seconds + $2::float8)
           RETURNING s.camera_id, s.file_name""",
        now,
        PRUNE_MARGIN_S,
    )
    return [(r["camera_id"], r["file_name"]) for r in rows]
