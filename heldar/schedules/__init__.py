"""Recording schedules: weekly windows in a named time zone, and what they mean for recording and gaps."""

from heldar.schedules.policy import (
    SCHEDULED_MODES,
    START_EARLY_S,
    expected_recording,
    keeps_footage,
    next_recording_change,
    recording_intervals,
    should_record,
)
from heldar.schedules.windows import (
    Schedule,
    clip,
    format_clock,
    is_within,
    merge,
    next_transition,
    parse_clock,
    windows_between,
    within_soon,
)
from heldar.schedules.zone import UnknownZone, check_zone_name, default_zone_name, local_zone_name

__all__ = [
    "SCHEDULED_MODES",
    "START_EARLY_S",
    "Schedule",
    "UnknownZone",
    "check_zone_name",
    "clip",
    "default_zone_name",
    "expected_recording",
    "format_clock",
    "is_within",
    "keeps_footage",
    "local_zone_name",
    "merge",
    "next_recording_change",
    "next_transition",
    "parse_clock",
    "recording_intervals",
    "should_record",
    "windows_between",
    "within_soon",
]
