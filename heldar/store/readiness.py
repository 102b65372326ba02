"""The two reads ``/readyz`` makes: is the database there, and how many recorders run."""

from __future__ import annotations

import asyncpg

from heldar.readiness import RecorderCounts

Executor = asyncpg.Pool | asyncpg.Connection


async def database_answers(db: Executor) -> bool:
    return bool(await db.fetchval("SELECT 1") == 1)


async def recorder_counts(db: Executor) -> RecorderCounts:
    """Cameras that should record (enabled, recording on) and how many of them are ``recording``."""
    row = await db.fetchrow(
        "SELECT count(*) AS expected, count(*) FILTER (WHERE s.state = 'recording') AS recording"
        " FROM cameras c LEFT JOIN camera_status s ON s.camera_id = c.id WHERE c.enabled AND c.record_enabled"
    )
    assert row is not None
    return RecorderCounts(expected=int(row["expected"]), recording=int(row["recording"]))
