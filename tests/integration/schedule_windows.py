"""A schedule body for the window ``[open, close)`` around real instants, for tests that record for real."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

# No DST, and not UTC, so the tests also prove that windows are read in the schedule's zone.
TEST_ZONE = "Asia/Kolkata"


def window_body(open_at: datetime, close_at: datetime, zone: str = TEST_ZONE, **extra: Any) -> dict[str, Any]:
    """``POST /schedules`` body whose only window is ``[open_at, close_at)`` (shorter than a day; in a zone
    without DST), to the second."""
    assert timedelta(0) < close_at - open_at < timedelta(days=1)
    tz = ZoneInfo(zone)
    lo, hi = open_at.astimezone(tz), close_at.astimezone(tz)
    return {"days": [lo.weekday()], "time_start": lo.strftime("%H:%M:%S"), "time_end": hi.strftime("%H:%M:%S"),
            "timezone": zone, **extra}  # fmt: skip
