"""What a camera's recorder hands to the store: segments, a status change, events — in one batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CAMERA_STATES = ("unknown", "disabled", "connecting", "recording", "offline", "error")


@dataclass(frozen=True)
class SegmentRecord:
    file_name: str
    start: datetime
    end: datetime
    duration_s: float
    size_bytes: int
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    source: str = "live"  # live | backfill
    gap_cause: str | None = None  # why the recording stopped before this segment, when it did
    sha256: str | None = None  # of the file as indexed (the integrity chain's input)

    @property
    def bitrate_kbps(self) -> float | None:
        return self.size_bytes * 8 / self.duration_s / 1000 if self.duration_s > 0 else None


@dataclass(frozen=True)
class StatusChange:
    state: str | None = None
    last_error: str | None = None
    last_error_code: str | None = None
    clear_error: bool = False
    recorder_pid: int | None = None
    clear_pid: bool = False
    recorder_node: str | None = None
    last_started_at: datetime | None = None
    last_stop_at: datetime | None = None
    reconnects: int = 0

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in CAMERA_STATES:
            raise ValueError(f"unknown camera state {self.state!r}")


@dataclass(frozen=True)
class EventRecord:
    event_type: str
    severity: str = "info"
    payload: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class RecordingBatch:
    camera_id: str
    segments: list[SegmentRecord] = field(default_factory=list)
    status: list[StatusChange] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.segments or self.status or self.events)

    def absorb(self, other: RecordingBatch) -> None:
        """Append ``other`` (a later batch) to this one, keeping order."""
        self.segments.extend(other.segments)
        self.status.extend(other.status)
        self.events.extend(other.events)


@dataclass(frozen=True)
class AppliedBatch:
    segments_inserted: int
    segments_updated: int
    gaps: list[dict[str, Any]]
