"""CameraActor ``camera:<id>``: a thin Ray shell around ``CameraRecorder``.

Kept light on purpose (no asyncpg, OpenCV or FastAPI in this module graph): one runs per camera. It
writes through the supervisor, which holds the cluster's database connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import datetime
from typing import Any

import ray

from heldar.models.cameras import Camera
from heldar.recording.backfill import FillResult, GapSink
from heldar.recording.camera_recorder import CameraRecorder, RecorderOptions
from heldar.recording.gap_filler import GapFiller
from heldar.recording.records import RecordingBatch

logger = logging.getLogger(__name__)


def camera_actor_name(camera_id: str) -> str:
    return f"camera:{camera_id}"


class SupervisorSink(GapSink):
    """Writes a camera's batches (and ANR bookkeeping) through the named supervisor actor."""

    def __init__(self, namespace: str, timeout_s: float = 30.0) -> None:
        self.namespace = namespace
        self.timeout_s = timeout_s
        self._handle: Any = None

    def _supervisor(self) -> Any:
        if self._handle is None:
            self._handle = ray.get_actor("supervisor", namespace=self.namespace)
        return self._handle

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await asyncio.wait_for(getattr(self._supervisor(), method).remote(*args), self.timeout_s)
        except Exception:
            self._handle = None  # look the supervisor up again next time (it may have restarted)
            raise

    async def write(self, batch: RecordingBatch) -> None:
        await self._call("write_batch", batch)

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]:
        return await self._call("indexed_sizes", camera_id, file_names)  # type: ignore[no-any-return]

    async def gaps_to_fill(self, camera_id: str) -> list[dict[str, Any]]:
        return await self._call("gaps_to_fill", camera_id)  # type: ignore[no-any-return]

    async def acquire_fill_slot(self, camera_id: str, ttl_s: float) -> str | None:
        return await self._call("acquire_fill_slot", camera_id, ttl_s)  # type: ignore[no-any-return]

    async def release_fill_slot(self, lease_id: str) -> None:
        await self._call("release_fill_slot", lease_id)

    async def record_fill(self, camera_id: str, gap_id: str, started_at: datetime, result: FillResult) -> Any:
        return await self._call("record_fill", camera_id, gap_id, started_at, result)


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=32)
class CameraActor:
    def __init__(
        self,
        camera: Camera,
        options: RecorderOptions,
        namespace: str,
        version: str,
        anr_interval_s: float | None = None,
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.version = version
        sink = SupervisorSink(namespace)
        self.recorder = CameraRecorder(camera, options, sink)
        self.filler = GapFiller(
            camera, self.recorder.camera_dir, sink, interval_s=anr_interval_s or 300.0,
            rtsp_timeout_s=options.rtsp_timeout_s,
        )  # fmt: skip
        self.anr_enabled = anr_interval_s is not None
        self._task: asyncio.Task[None] | None = None
        self._anr_task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = loop.create_task(self._run())
        if self.anr_enabled and self._anr_task is None:
            self._anr_task = loop.create_task(self.filler.run())
        return os.getpid()

    async def fill_now(self, gap: dict[str, Any]) -> Any:
        """One ANR attempt at ``gap`` right away (manual trigger); returns the updated gap row."""
        return await self.filler.fill_one(gap)

    async def _run(self) -> None:
        try:
            await self.recorder.run()
        except Exception:
            logger.exception("camera %s: recorder crashed", self.recorder.camera.id)
            raise
        finally:
            self._done.set()

    async def health(self) -> dict[str, Any]:
        report = self.recorder.health()
        report.update(
            actor_pid=os.getpid(), version=self.version, running=not self._done.is_set(),
            anr={"enabled": self.anr_enabled, "attempts": self.filler.attempts, "filled": self.filler.filled,
                 "busy_gap": self.filler.busy_gap},
        )  # fmt: skip
        return report

    async def watch(self) -> str:
        """Returns when the recorder ends; raises in the caller the moment this actor dies."""
        await self._done.wait()
        return "stopped"

    async def stop(self) -> None:
        if self._anr_task is not None:
            self._anr_task.cancel()
        self.recorder.stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 20)
