"""Recorded footage, read side: ``/api/v1/cameras/{camera_id}/{segments,timeline,gaps}``.

Times in and out are RFC 3339 UTC. A bad time or ``from > to`` is a 422 with ``details``.
``/timeline`` joins seams of up to 2 s; ``/gaps`` reports holes longer than 2 s, including the
leading and trailing edges of the window (``to`` defaults to now, so an outage still in progress
shows as an open-ended trailing gap), but only in time when footage is expected: not before the camera
was registered, and for ``record_mode`` ``scheduled``/``scheduled_event`` not outside its schedule windows.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import asyncpg
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from api.deps import get_pool, require_camera
from heldar.auth.capabilities import Principal
from heldar.coverage import Range, clip_gaps, coverage_gaps, live_edge, merge_ranges
from heldar.errors import Invalid
from heldar.store import cameras as camera_store
from heldar.store import recording as recording_store
from heldar.store import recording_reads
from heldar.store import schedules as schedule_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["recordings"])

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=366)
SEAM_S = 2.0

_SPACE_OFFSET_RE = re.compile(r"^(.*T[0-9:.]+) (\d{2}:?\d{2})$")


class SegmentView(BaseModel):
    id: str = Field(description="The segment's id.")
    camera_id: str = Field(description="The camera recorded.")
    file_name: str = Field(description="The MP4's file name.")
    start_time: datetime = Field(description="First frame's time (UTC).")
    end_time: datetime = Field(description="End of the last frame (UTC).")
    duration_s: float = Field(description="Length in seconds.")
    codec: str | None = Field(description="Video codec (`h264`, `hevc`).")
    width: int | None = Field(description="Video width, pixels.")
    height: int | None = Field(description="Video height, pixels.")
    fps: float | None = Field(description="Frame rate.")
    size_bytes: int = Field(description="File size in bytes.")
    source: str = Field(description="`live` (recorded) or `anr` (back-filled from the camera).")
    created_at: datetime = Field(description="When it was indexed (UTC).")
    url: str = Field(description="Where to fetch the file (`/media/recordings/...`).")


_SEGMENT_FIELDS = tuple(f for f in SegmentView.model_fields if f != "url")


class TimeRange(BaseModel):
    start: datetime = Field(description="Start (UTC).")
    end: datetime = Field(description="End (UTC).")
    seconds: float = Field(description="Length in seconds.")


class Timeline(BaseModel):
    camera_id: str = Field(description="The camera.")
    from_: datetime = Field(alias="from", description="Start of the window (UTC).")
    to: datetime = Field(description="End of the window (UTC).")
    ranges: list[TimeRange] = Field(description="Recorded stretches, seams of up to 2 s joined.")
    recorded_seconds: float = Field(description="Seconds recorded in the window.")
    segment_count: int = Field(description="Segments in the window.")

    model_config = ConfigDict(populate_by_name=True)


class CoverageGap(TimeRange):
    open_ended: bool = Field(description="True for a gap running to the window's end (footage may still arrive).")


class Gaps(BaseModel):
    camera_id: str = Field(description="The camera.")
    from_: datetime = Field(alias="from", description="Start of the window (UTC).")
    to: datetime = Field(description="End of the window (UTC).")
    gaps: list[CoverageGap] = Field(description="Stretches without footage.")
    gap_count: int = Field(description="How many.")
    total_gap_seconds: float = Field(description="Their total length, seconds.")

    model_config = ConfigDict(populate_by_name=True)


def parse_time(value: str | None, field: str) -> datetime | None:
    """RFC 3339 with an offset (``Z`` or ``±hh:mm``) → aware UTC datetime; ``None`` passes through."""
    if value is None:
        return None
    text = value.strip()
    # An unencoded "+00:00" in a query string arrives as " 00:00".
    spaced = _SPACE_OFFSET_RE.match(text)
    if spaced:
        text = f"{spaced.group(1)}+{spaced.group(2)}"
    problem = f"{field} must be an RFC 3339 time with a UTC offset, e.g. 2026-01-01T12:00:00Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"validation failed: {problem}", [{"field": field, "message": problem}]) from None
    if "T" not in text.upper() or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Invalid(f"validation failed: {problem}", [{"field": field, "message": problem}])
    return parsed.astimezone(UTC)


def _check_order(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        message = "from must not be after to"
        raise Invalid(f"validation failed: {message}", [{"field": "from", "message": message}])


def _window(from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    """The query window: ``to`` defaults to now, ``from`` to 24 h before ``to``."""
    start, end = parse_time(from_, "from"), parse_time(to, "to")
    if end is None:
        end = datetime.now(UTC)
    if start is None:
        start = end - DEFAULT_WINDOW
    _check_order(start, end)
    if end - start > MAX_WINDOW:
        message = f"window longer than {MAX_WINDOW.days} days"
        raise Invalid(f"validation failed: {message}", [{"field": "to", "message": message}])
    return start, end


def media_url(camera_id: str, file_name: str) -> str:
    return f"/media/recordings/{quote(camera_id, safe='')}/{quote(file_name, safe='')}"


@router.get("/{camera_id}/segments", response_model=list[SegmentView], summary="List recorded segments")
async def list_segments(
    camera_id: str,
    from_: str | None = Query(None, alias="from", description="RFC 3339; segments ending at or after it"),
    to: str | None = Query(None, description="RFC 3339; segments starting at or before it"),
    limit: int = Query(DEFAULT_LIMIT, description="clamped to 1-5000"),
    _: Principal = require_camera("video:playback"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """The camera's indexed segments overlapping the window, oldest first, each with the URL of its file."""
    start, end = parse_time(from_, "from"), parse_time(to, "to")
    _check_order(start, end)
    await camera_store.ensure_camera(pool, camera_id)
    rows = await recording_store.list_segments(pool, camera_id, start, end, max(1, min(limit, MAX_LIMIT)))
    # The rows are the segments table's own typed columns: serialised straight by pydantic-core, without
    # building and re-validating 500 models (same bytes as the response model gives; a third of the time).
    views = [{**{k: row[k] for k in _SEGMENT_FIELDS}, "url": media_url(camera_id, row["file_name"])} for row in rows]
    return Response(to_json(views), media_type="application/json")


@router.get("/{camera_id}/timeline", response_model=Timeline, summary="Get the recorded timeline of a window")
async def timeline(
    camera_id: str,
    from_: str | None = Query(None, alias="from", description="RFC 3339; default 24 h before to"),
    to: str | None = Query(None, description="RFC 3339; default now"),
    _: Principal = require_camera("video:playback"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, object]:
    """The recorded stretches of the window (seams up to 2 s joined) and the seconds recorded; windows of
    at most 366 days."""
    start, end = _window(from_, to)
    await camera_store.ensure_camera(pool, camera_id)
    coverage = await recording_reads.window_coverage(pool, camera_id, start, end)
    ranges = merge_ranges(coverage.covered, join_seam_s=SEAM_S)
    return {
        "camera_id": camera_id,
        "from": start,
        "to": end,
        "ranges": [{"start": r.start, "end": r.end, "seconds": round(r.seconds, 3)} for r in ranges],
        "recorded_seconds": round(coverage.recorded_seconds, 3),
        "segment_count": coverage.segment_count,
    }


@router.get("/{camera_id}/gaps", response_model=Gaps, summary="Get the gaps in a window's recordings")
async def gaps(
    camera_id: str,
    from_: str | None = Query(None, alias="from", description="RFC 3339; default 24 h before to"),
    to: str | None = Query(None, description="RFC 3339; default now (an ongoing outage is a trailing gap)"),
    _: Principal = require_camera("video:playback"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, object]:
    """The stretches of the window without footage, counting only time in which footage is expected (after
    registration, inside schedule windows); an outage still going on is an open-ended trailing gap."""
    start, end = _window(from_, to)
    camera = await camera_store.get_camera(pool, camera_id)
    coverage = await recording_reads.window_coverage(pool, camera_id, start, end)
    covered = list(coverage.covered)
    status = await recording_store.get_status(pool, camera_id)
    if status is not None:
        edge = live_edge(status["state"], status["last_segment_at"], datetime.now(UTC), camera.segment_seconds)
        if edge is not None and edge.end > start and edge.start < end:
            covered.append(Range(max(edge.start, start), min(edge.end, end)))
    # Only time in which footage is expected can be a gap: not before the camera was registered, and for a
    # scheduled mode not outside its schedule windows.
    expected = await schedule_store.expected_spans(pool, camera, start, end)
    holes = clip_gaps(coverage_gaps(covered, start, end, min_gap_s=SEAM_S), expected, min_gap_s=SEAM_S)
    return {
        "camera_id": camera_id,
        "from": start,
        "to": end,
        "gaps": [
            {"start": g.start, "end": g.end, "seconds": round(g.seconds, 3), "open_ended": g.open_ended} for g in holes
        ],
        "gap_count": len(holes),
        "total_gap_seconds": round(sum(g.seconds for g in holes), 3),
    }
