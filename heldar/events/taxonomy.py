"""The built-in event types (descriptive, not exhaustive: apps and workers add their own) and severities."""

from __future__ import annotations

from collections.abc import Iterable

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
NOTIFY_CHANNEL = "heldar_events"

EVENT_TYPES: tuple[tuple[str, str], ...] = (
    ("camera_offline", "A camera's recorder lost the stream; the payload names the cause."),
    ("recorder_error", "A recorder stopped on a configuration or codec fault (it will not fix itself)."),
    (
        "camera_not_recording",
        "A camera that should record has not for its segment length plus a grace; the "
        "payload says why (the recorder's last cause, or the supervisor's when no recorder runs).",
    ),
    ("recording_gap", "A hole between recorded segments was detected and persisted as a recording gap."),
    ("recording_gap_filled", "ANR back-filled a recording gap from the camera's own storage."),
    ("recording_gap_failed", "ANR gave up on a recording gap after its last attempt."),
    ("sampler_offline", "A frame sampler stopped delivering frames for a camera."),
    ("zone_enter", "A track entered a zone (confirmed over consecutive frames)."),
    ("zone_exit", "A track left a zone, or was not seen for the track timeout (synthetic exit)."),
    ("zone_dwell", "A track stayed in a zone for the zone's dwell_seconds (once per visit)."),
    ("zone_cross_ab", "A track crossed a line zone from its A side to its B side."),
    ("zone_cross_ba", "A track crossed a line zone from its B side to its A side."),
    ("test", "A synthetic event sent by POST /api/v1/webhooks/{id}/test."),
)


def severity_at_least(severity: str, floor: str) -> bool:
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(floor, 0)


def type_matches(patterns: Iterable[str], event_type: str) -> bool:
    """``*`` matches everything; ``zone_*`` matches a prefix; anything else matches exactly."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith("*") and event_type.startswith(pattern[:-1]):
            return True
    return False
