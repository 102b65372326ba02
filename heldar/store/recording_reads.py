"""Read-side SQL for the recording API beyond :mod:`heldar.store.recording`: window coverage, metrics.

Coverage over a window is read in keyset pages (``(start_time, id)``) and folded into the exact
union of footage as it goes, so a window of a year costs memory in proportion to its *holes*, not
to its segment count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.coverage import Range, merge_ranges
from heldar.store.recording import status_state_sql
from heldar.store.schedules import cameras_off_schedule

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection

SPAN_PAGE = 5000


@dataclass(frozen=True, slots=True)
class WindowCoverage:
    """Footage inside ``[start, end]``: exact union (no seam tolerance), clipped, and the segments seen."""

    start: datetime
    end: datetime
    covered: list[Range]
    segment_count: int

    @property
    def recorded_seconds(self) -> float:
        return sum(r.seconds for r in self.covered)


async def window_coverage(
    db: Executor, camera_id: str, start: datetime, end: datetime, page_size: int = SPAN_PAGE
) -> WindowCoverage:
    """Exact covered ranges of ``camera_id`` inside ``[start, end]`` and the number of overlapping segments.

    A segment counts when it overlaps the closed window (``end_time >= start AND start_time <= end``,
    as ``list_segments`` selects); its footage is clipped to the window.
    """
    covered: list[Range] = []
    count = 0
    cursor: tuple[datetime, str] | None = None
    while True:
        rows = await db.fetch(
            "SELECT id, start_time, end_time FROM segments WHERE camera_id = $1"
            " AND end_time >= $2 AND start_time <= $3"
            " AND ($4::timestamptz IS NULL OR (start_time, id) > ($4::timestamptz, $5::text))"
            " ORDER BY start_time, id LIMIT $6",
            camera_id,
            start,
            end,
            cursor[0] if cursor else None,
            cursor[1] if cursor else None,
            page_size,
        )
        if not rows:
            break
        count += len(rows)
        clipped = [
            (max(r["start_time"], start), min(r["end_time"], end))
            for r in rows
            if r["end_time"] > start and r["start_time"] < end
        ]
        # Pages come in start order, so only the last range so far can still grow.
        tail = covered[-1:]
        covered[-1:] = merge_ranges([*((t.start, t.end) for t in tail), *clipped], join_seam_s=0.0)
        if len(rows) < page_size:
            break
        cursor = (rows[-1]["start_time"], rows[-1]["id"])
    return WindowCoverage(start, end, covered, count)


async def segment_totals(db: Executor) -> tuple[int, int]:
    """(indexed segments, sum of their sizes in bytes) over every camera."""
    row = await db.fetchrow("SELECT count(*) AS n, coalesce(sum(size_bytes), 0)::bigint AS bytes FROM segments")
    assert row is not None
    return int(row["n"]), int(row["bytes"])


async def status_for_metrics(db: Executor) -> list[dict[str, Any]]:
    """Per-camera counters for ``/metrics`` with the shown state (``disabled`` when not recording by choice,
    a scheduled camera outside its windows included)."""
    rows = await db.fetch(
        f"SELECT s.camera_id, {status_state_sql('$1')} AS state,"
        " s.reconnect_count, s.segments_written, s.bitrate_kbps, s.restarts_by_cause,"
        " extract(epoch FROM (now() - s.last_segment_at))::double precision AS last_segment_age_s"
        " FROM camera_status s JOIN cameras c ON c.id = s.camera_id ORDER BY s.camera_id",
        await cameras_off_schedule(db),
    )
    return [dict(r) for r in rows]
