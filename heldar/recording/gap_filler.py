"""One camera's ANR loop: pick pending gaps, take a cluster-wide fill slot, fill, record the outcome."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heldar.models.cameras import Camera
from heldar.recording.backfill import FillResult, GapSink, fill_gap, job_bound_s

logger = logging.getLogger(__name__)


class GapFiller:
    def __init__(
        self,
        camera: Camera,
        camera_dir: Path,
        sink: GapSink,
        *,
        interval_s: float,
        rtsp_timeout_s: float = 5.0,
        slot_wait_s: float = 30.0,
    ) -> None:
        self.camera = camera
        self.camera_dir = camera_dir
        self.sink = sink
        self.interval_s = interval_s
        self.rtsp_timeout_s = rtsp_timeout_s
        self.slot_wait_s = slot_wait_s
        self.attempts = 0
        self.filled = 0
        self.busy_gap: str | None = None
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("camera %s: ANR sweep failed", self.camera.id)
            await asyncio.sleep(self.interval_s)

    async def sweep(self) -> int:
        """Fill this camera's eligible gaps one at a time, newest first; returns attempts made."""
        made = 0
        for gap in await self.sink.gaps_to_fill(self.camera.id):
            if await self.fill_one(gap) is not None:
                made += 1
        return made

    async def fill_one(self, gap: dict[str, Any]) -> Any:
        """One attempt at ``gap`` (a recording_gaps row). None when no fill slot came free in time."""
        async with self._lock:
            seconds = float(gap["gap_seconds"])
            lease = await self._wait_for_slot(job_bound_s(seconds) + 30)
            if lease is None:
                logger.info("camera %s: no ANR slot free; gap %s waits for the next sweep", self.camera.id, gap["id"])
                return None
            started = datetime.now(UTC)
            self.busy_gap = gap["id"]
            try:
                result = await self._attempt(gap)
            finally:
                self.busy_gap = None
                await self.sink.release_fill_slot(lease)
            self.attempts += 1
            self.filled += int(result.ok)
            logger.info(
                "camera %s: gap %s %s",
                self.camera.id,
                gap["id"],
                "filled" if result.ok else f"not filled ({result.error})",
            )
            return await self.sink.record_fill(self.camera.id, gap["id"], started, result)

    async def _attempt(self, gap: dict[str, Any]) -> FillResult:
        template = self.camera.replay_url_template()
        if template is None:
            return FillResult(False, "config: no replay URL (set anr_replay_url_template or the camera address)")
        return await fill_gap(
            template=template,
            gap_start=gap["gap_start"],
            gap_end=gap["gap_end"],
            camera_dir=self.camera_dir,
            rtsp_transport=self.camera.rtsp_transport,
            record_audio=self.camera.record_audio,
            secrets_to_mask=self.camera.secrets(),
            timeout_s=self.rtsp_timeout_s,
        )

    async def _wait_for_slot(self, ttl_s: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.slot_wait_s
        delay = 0.2
        while True:
            lease = await self.sink.acquire_fill_slot(self.camera.id, ttl_s)
            if lease is not None or loop.time() >= deadline:
                return lease
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
