"""Test-only analyzers and consumers, loaded by Ray workers by name (``HELDAR_AI_ANALYZERS``,
``HELDAR_DETECTION_CONSUMERS``): a detector call that hangs, and a consumer that fails once."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from heldar.perception.detections import Detection, DetectionBatch


class HangAnalyzer:
    """Hangs (a call that never returns, as far as anyone waiting can tell) on the first frame it sees while
    ``config.marker`` does not exist; creates the marker first, so the replaced detector works. Afterwards it
    reports one tracked box per frame."""

    name = "hang"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.marker = str((config or {}).get("marker", ""))

    def analyze(self, frame: Any, captured_at: datetime) -> list[Detection]:
        if self.marker and not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
            time.sleep(3600)
        return [Detection("thing", 0.9, (0.4, 0.4, 0.2, 0.2), "h1")]


class FlakyConsumer:
    """Fails on the first ``flaky`` batch it is given in its process, then records every ``flaky`` frame it
    finishes as a ``flaky_consumed`` event (so a test can see that the failed frame came back)."""

    name = "flaky"

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.failed = False

    async def consume(self, batch: DetectionBatch) -> None:
        if batch.task_type != "flaky":
            return
        if not self.failed:
            self.failed = True
            raise RuntimeError("flaky consumer: failing once on purpose")
        from heldar.store.events import insert_event

        await insert_event(self.pool, "flaky_consumed", camera_id=batch.camera_id, payload={"frame_id": batch.frame_id})


def flaky_consumer(context: Any) -> FlakyConsumer:
    return FlakyConsumer(context.pool)
