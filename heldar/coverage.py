"""Timeline maths over recorded ``(start, end)`` ranges: merged coverage, holes, seconds recorded.

Pure functions of timezone-aware datetimes. Segments may arrive in any order, may overlap and
may stick out of the query window; ranges with ``end <= start`` carry no footage and are ignored.
Seam rules follow upstream: ``/gaps`` reports holes *longer than* 2 s (a hole of exactly 2 s is a
seam), and the indexer opens a recording gap when a segment starts *more than* 3 s after the
previous end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class _HasSpan(Protocol):
    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...


SpanLike = tuple[datetime, datetime] | _HasSpan


@dataclass(frozen=True, slots=True)
class Range:
    """Covered time ``[start, end)``."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole ``[start, end)``; ``open_ended`` when it runs to the window end (in progress if that is now)."""

    start: datetime
    end: datetime
    open_ended: bool = False

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def _pairs(segments: Iterable[SpanLike]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for seg in segments:
        start, end = seg if isinstance(seg, tuple) else (seg.start, seg.end)
        if end > start:
            out.append((start, end))
    out.sort()
    return out


def merge_ranges(segments: Iterable[SpanLike], join_seam_s: float = 2.0) -> list[Range]:
    """Sorted, disjoint ranges; neighbours whose seam is ≤ ``join_seam_s`` seconds are joined."""
    seam = timedelta(seconds=join_seam_s)
    merged: list[Range] = []
    cur_start: datetime | None = None
    cur_end: datetime | None = None
    for start, end in _pairs(segments):
        if cur_start is None or cur_end is None:
            cur_start, cur_end = start, end
        elif start - cur_end <= seam:
            cur_end = max(cur_end, end)
        else:
            merged.append(Range(cur_start, cur_end))
            cur_start, cur_end = start, end
    if cur_start is not None and cur_end is not None:
        merged.append(Range(cur_start, cur_end))
    return merged


def _clipped(segments: Iterable[SpanLike], window_start: datetime, window_end: datetime) -> list[Range]:
    """Exact union of the segments inside the window (touching ranges joined, no seam tolerance)."""
    clipped = [
        (max(start, window_start), min(end, window_end))
        for start, end in _pairs(segments)
        if end > window_start and start < window_end
    ]
    return merge_ranges(clipped, join_seam_s=0.0)


def coverage_gaps(
    segments: Iterable[SpanLike],
    window_start: datetime,
    window_end: datetime,
    min_gap_s: float = 2.0,
) -> list[Gap]:
    """Holes longer than ``min_gap_s`` inside ``[window_start, window_end)``, oldest first.

    The leading edge (window start to first footage) and the trailing edge (last footage to
    window end, ``open_ended=True``) count as holes too; no footage at all is one open-ended hole.
    """
    if window_end <= window_start:
        return []
    limit = timedelta(seconds=min_gap_s)
    gaps: list[Gap] = []
    cursor = window_start
    for rng in _clipped(segments, window_start, window_end):
        if rng.start - cursor > limit:
            gaps.append(Gap(cursor, rng.start))
        cursor = max(cursor, rng.end)
    if window_end - cursor > limit:
        gaps.append(Gap(cursor, window_end, open_ended=True))
    return gaps


def clip_gaps(gaps: Iterable[Gap], expected: Sequence[tuple[datetime, datetime]], min_gap_s: float = 2.0) -> list[Gap]:
    """The parts of ``gaps`` that fall inside ``expected`` (sorted, disjoint ``[start, end)`` spans in which
    footage should exist: after the camera was registered, inside its schedule windows), each longer than
    ``min_gap_s``. A part that still ends where an open-ended gap did stays open-ended."""
    limit = timedelta(seconds=min_gap_s)
    out: list[Gap] = []
    for gap in gaps:
        for start, end in expected:
            if end <= gap.start:
                continue
            if start >= gap.end:
                break
            part = Gap(max(gap.start, start), min(gap.end, end), gap.open_ended and end >= gap.end)
            if part.end - part.start > limit:
                out.append(part)
    return out


def recorded_seconds(segments: Iterable[SpanLike], window_start: datetime, window_end: datetime) -> float:
    """Seconds of footage inside the window (overlaps counted once; no seam tolerance)."""
    if window_end <= window_start:
        return 0.0
    return sum(r.seconds for r in _clipped(segments, window_start, window_end))


def coverage_ratio(segments: Iterable[SpanLike], window_start: datetime, window_end: datetime) -> float:
    """``recorded_seconds / window length`` in 0..1 (0 for an empty window)."""
    total = (window_end - window_start).total_seconds()
    if total <= 0:
        return 0.0
    return min(1.0, recorded_seconds(segments, window_start, window_end) / total)


def detect_new_gap(
    prev_end: datetime | None, start: datetime, threshold_s: float = 3.0
) -> tuple[datetime, datetime] | None:
    """``(prev_end, start)`` when a new segment starts more than ``threshold_s`` after the previous end."""
    if prev_end is None:
        return None
    if (start - prev_end).total_seconds() > threshold_s:
        return (prev_end, start)
    return None


def live_edge(
    state: str | None,
    last_segment_end: datetime | None,
    now: datetime,
    segment_seconds: float,
    grace_s: float = 15.0,
) -> Range | None:
    """The footage being written right now, not yet indexed: ``(last segment end, now)``.

    Only while the recorder reports ``recording`` and its last segment closed less than one segment plus
    ``grace_s`` ago; otherwise the trailing hole is a real outage and must stay visible.
    """
    if state != "recording" or last_segment_end is None or last_segment_end >= now:
        return None
    if (now - last_segment_end).total_seconds() > segment_seconds + grace_s:
        return None
    return Range(last_segment_end, now)
