"""Read-side SQL for the recording API beyond :mod:`heldar.store.recording`: window coverage, metrics.

Coverage over a window is the exact union of footage, computed by PostgreSQL, so a window of a year
costs memory in proportion to its *holes*, not to its segment count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.coverage import Range
from heldar.store.recording import status_state_sql
from heldar.store.schedules import cameras_off_schedule
from heldar.store.segment_windows import start_floor

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection


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


# The exact union of a camera's footage in [$2, $3] computed by PostgreSQL (gaps and islands): a new island
# starts where a segment begins after every earlier one ended; only the islands come back.
_ISLANDS = """
WITH w AS (
    SELECT start_time, end_time FROM segments
    WHERE camera_id = $1 AND start_time >= $4 AND start_time <= $3 AND end_time >= $2
), c AS (
    SELECT greatest(start_time, $2) AS s, least(end_time, $3) AS e FROM w
    WHERE least(end_time, $3) > greatest(start_time, $2)
), o AS (
    SELECT s, e, max(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev FROM c
), g AS (
    SELECT s, e, count(*) FILTER (WHERE prev IS NULL OR s > prev) OVER (ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS grp
    FROM o
)
SELECT (SELECT count(*) FROM w) AS n, min(s) AS s, max(e) AS e FROM g GROUP BY grp ORDER BY 2
"""


async def window_coverage(db: Executor, camera_id: str, start: datetime, end: datetime) -> WindowCoverage:
    """Exact covered ranges of ``camera_id`` inside ``[start, end]`` and the number of overlapping segments.

    A segment counts when it overlaps the closed window (``end_time >= start AND start_time <= end``,
    as ``list_segments`` selects); its footage is clipped to the window. The union is computed in the
    database, so the answer (and this process's memory) is proportional to the *holes*, and the scan to the
    window (``start_floor``), whatever footage is kept.
    """
    floor = await start_floor(db, camera_id, start)
    if floor is None:
        return WindowCoverage(start, end, [], 0)
    rows = await db.fetch(_ISLANDS, camera_id, start, end, floor)
    if not rows:
        count = await db.fetchval(
            "SELECT count(*) FROM segments WHERE camera_id = $1 AND start_time >= $4 AND start_time <= $3"
            " AND end_time >= $2",
            camera_id,
            start,
            end,
            floor,
        )
        return WindowCoverage(start, end, [], int(count))
    return WindowCoverage(start, end, [Range(r["s"], r["e"]) for r in rows], int(rows[0]["n"]))


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
        " s.reconnect_count, s.segments_written, s.bitrate_kbps, s.restarts_by_cause, s.last_segment_at,"
        " extract(epoch FROM (now() - s.last_segment_at))::double precision AS last_segment_age_s"
        " FROM camera_status s JOIN cameras c ON c.id = s.camera_id ORDER BY s.camera_id",
        await cameras_off_schedule(db),
    )
    return [dict(r) for r in rows]
