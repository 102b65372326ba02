"""Bounding window scans of ``segments`` (shared by the segment list and the coverage reads)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection


async def start_floor(db: Executor, camera_id: str, start: datetime) -> datetime | None:
    """The earliest start a segment overlapping a window beginning at ``start`` can have (None: no segments).

    ``start - (the camera's longest segment)``, read from the ``(camera_id, end_time - start_time)`` index in
    one probe, lets the window scans be ``start_time`` range scans whose cost follows the window, not the
    footage kept before it.
    """
    longest = await db.fetchval("SELECT max(end_time - start_time) FROM segments WHERE camera_id = $1", camera_id)
    return None if longest is None else start - longest
