"""Zone specs as the engine sees them, and the per-zone options kept in ``config``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heldar.zones.geometry import GeometryError, Point, validate_geometry

SEVERITIES = ("info", "warning", "critical")
ZONE_EVENT_TYPES = ("enter", "exit", "dwell", "cross_ab", "cross_ba")
DIRECTIONS = ("any", "ab", "ba")
DEFAULT_CONFIRM_FRAMES = 2
DEFAULT_MIN_CONFIDENCE = 0.5
MAX_LABELS = 64
MAX_DWELL_SECONDS = 7 * 86400


class ZoneConfigError(ValueError):
    """A zone option is invalid; the message says why."""


def validate_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check the known options (``confirm_frames`` 1-10, ``min_confidence`` 0..1, ``direction`` any|ab|ba);
    other keys are kept as they are for apps."""
    out = dict(config or {})
    if "confirm_frames" in out:
        value = out["confirm_frames"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
            raise ZoneConfigError("config.confirm_frames must be an integer 1-10")
    if "min_confidence" in out:
        value = out["min_confidence"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and 0 <= value <= 1)
        ):
            raise ZoneConfigError("config.min_confidence must be a number 0..1")
    if "direction" in out and out["direction"] not in DIRECTIONS:
        raise ZoneConfigError(f"config.direction must be one of {', '.join(DIRECTIONS)}")
    return out


def validate_labels(labels: Sequence[str] | None) -> list[str]:
    clean: list[str] = []
    for label in labels or ():
        if not isinstance(label, str) or not label.strip() or len(label) > 64:
            raise ZoneConfigError("labels must be non-empty strings of at most 64 characters")
        if label not in clean:
            clean.append(label)
    if len(clean) > MAX_LABELS:
        raise ZoneConfigError(f"at most {MAX_LABELS} labels")
    return clean


@dataclass(frozen=True)
class ZoneSpec:
    """One enabled zone, validated, as the engine runs it."""

    id: str
    camera_id: str
    name: str
    kind: str  # region | line
    points: tuple[Point, ...]
    dwell_seconds: float = 0.0
    labels: frozenset[str] = frozenset()
    severity: str = "info"
    confirm_frames: int = DEFAULT_CONFIRM_FRAMES
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    direction: str = "any"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ZoneSpec:
        config = row.get("config") or {}
        points = validate_geometry(row["kind"], row["polygon"])
        return cls(
            id=row["id"],
            camera_id=row["camera_id"],
            name=row["name"],
            kind=row["kind"],
            points=tuple(points),
            dwell_seconds=float(row.get("dwell_seconds") or 0.0),
            labels=frozenset(row.get("labels") or ()),
            severity=row.get("severity") or "info",
            confirm_frames=int(config.get("confirm_frames", DEFAULT_CONFIRM_FRAMES)),
            min_confidence=float(config.get("min_confidence", DEFAULT_MIN_CONFIDENCE)),
            direction=str(config.get("direction", "any")),
        )

    def accepts(self, label: str | None, confidence: float | None) -> bool:
        if self.labels and label not in self.labels:
            return False
        return confidence is None or confidence >= self.min_confidence


@dataclass(frozen=True)
class ZoneEvent:
    """One fact the engine derived. ``timestamp`` is always a frame time, never an arrival time."""

    camera_id: str
    zone_id: str
    zone_name: str
    track_id: str
    event_type: str  # enter | exit | dwell | cross_ab | cross_ba
    timestamp: datetime
    severity: str = "info"
    label: str | None = None
    dwell_seconds: float | None = None
    synthetic: bool = False  # an exit synthesised for a track that stopped being seen
    stream: str = ""  # the frame stream (kernel task or worker task type) the track was seen on
    evidence_url: str | None = None  # the JPEG of the frame (enter, dwell, crossings), see heldar.zones.evidence


@dataclass(frozen=True)
class OpenVisit:
    """A visit persisted as entered and not yet exited: what a restarted engine resumes from."""

    zone_id: str
    track_id: str
    entered_at: datetime
    label: str | None = None
    dwell_fired: bool = False
    stream: str = ""  # the frame stream the visit was seen on ("" for visits written before streams)


__all__ = [
    "GeometryError",
    "OpenVisit",
    "ZoneConfigError",
    "ZoneEvent",
    "ZoneSpec",
    "validate_config",
    "validate_labels",
]
