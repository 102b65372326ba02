"""What a camera's ``record_mode`` and schedules mean for recording, kept footage and gaps.

* ``continuous``: always records; every second since the camera was registered is expected.
* ``event``: records into a short buffer; only footage inside event windows is kept (``event_mode``).
* ``scheduled``: records only inside its schedule windows, continuously. The recorder is started up to
  ``START_EARLY_S`` before a window opens (the supervisor reconciles every 10 s and ffmpeg needs a few
  seconds for its first segment), so the whole window is on disk; it is stopped at the first reconcile
  after the window closes. A window that opens less than ``START_EARLY_S`` after the previous one closed
  keeps the recorder running. No schedule (or none enabled): never records.
* ``scheduled_event``: as upstream, "inside either": footage inside a schedule window is kept as if
  continuous, and outside the windows the camera works as in ``event`` mode (armed, buffer pruned unless
  a trigger keeps it). The recorder therefore always runs.

Time outside the schedule windows, and time before the camera was registered, is never a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from heldar.schedules.windows import WEEK, Interval, Schedule, is_within, merge, windows_between

SCHEDULED_MODES = frozenset({"scheduled", "scheduled_event"})
EVENT_MODES = frozenset({"event", "scheduled_event"})
START_EARLY_S = 20.0


def should_record(mode: str, schedules: Sequence[Schedule], now: datetime, lead_s: float = START_EARLY_S) -> bool:
    """Whether the recorder of a camera (enabled, record_enabled) in ``mode`` should run at ``now``."""
    if mode != "scheduled":
        return True
    return bool(recording_intervals(mode, schedules, now, now + timedelta(microseconds=1), lead_s))


def recording_intervals(
    mode: str, schedules: Sequence[Schedule], start: datetime, end: datetime, lead_s: float = START_EARLY_S
) -> list[Interval]:
    """The parts of ``[start, end)`` in which ``should_record`` holds, merged: for ``scheduled``, each window
    ``[open, close)`` widened to ``[open - lead_s, close)``."""
    if mode != "scheduled":
        return [(start, end)] if end > start else []
    lead = timedelta(seconds=lead_s)
    opened = [(max(s - lead, start), e) for s, e in windows_between(schedules, start, end + lead)]
    return [(s, min(e, end)) for s, e in merge(opened) if s < end]


def next_recording_change(
    mode: str, schedules: Sequence[Schedule], at: datetime, lead_s: float = START_EARLY_S
) -> datetime | None:
    """The first instant after ``at`` at which ``should_record`` changes; None if not within a week."""
    horizon = at + WEEK + timedelta(days=1)
    for start, end in recording_intervals(mode, schedules, at, horizon, lead_s):
        if start > at:
            return start
        if end < horizon:
            return end
    return None


def keeps_footage(mode: str, schedules: Sequence[Schedule], start: datetime, end: datetime) -> bool:
    """Whether a segment ``[start, end]`` is kept for its schedule alone (``scheduled_event``: it overlaps a
    window); event windows may keep it too (the store checks those)."""
    if mode != "scheduled_event":
        return mode not in EVENT_MODES
    if is_within(schedules, start):
        return True
    return bool(windows_between(schedules, start, max(end, start + timedelta(microseconds=1))))


def expected_recording(
    mode: str, schedules: Sequence[Schedule], created_at: datetime | None, start: datetime, end: datetime
) -> list[Interval]:
    """The parts of ``[start, end)`` in which footage should exist: after ``created_at`` and, for the
    scheduled modes, inside a schedule window."""
    lo = max(start, created_at) if created_at is not None else start
    if end <= lo:
        return []
    if mode in SCHEDULED_MODES:
        return windows_between(schedules, lo, end)
    return [(lo, end)]
