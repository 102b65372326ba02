"""The detection contract shared by ingest (producers) and consumers (zone engine, apps).

A ``DetectionBatch`` is what one analysed frame produced: its camera, the task that produced it, the
frame's capture time (the time every consumer must use, never the arrival time) and an idempotency key
``frame_id``. Consumers implement ``DetectionConsumer``; ingest delivers each committed batch to each
consumer at least once: a batch a consumer has not finished (it raised, or the process died) is delivered
again by the replay, so consumers must be idempotent per (camera, frame_id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Detection:
    label: str | None
    confidence: float | None
    bbox: tuple[float, float, float, float] | None  # x, y, w, h normalised to 0..1
    track_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectionBatch:
    camera_id: str
    task_type: str
    frame_id: str
    captured_at: datetime  # UTC, the frame's timestamp
    detections: tuple[Detection, ...] = ()
    producer: str = "kernel"


class DetectionConsumer(Protocol):
    """Receives committed detection batches in capture order per camera (best effort across cameras)."""

    name: str

    async def consume(self, batch: DetectionBatch) -> None: ...
