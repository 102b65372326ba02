"""CameraActor ``camera:<id>``: a thin Ray shell around ``CameraRecorder``.

Kept light on purpose (no asyncpg, OpenCV or FastAPI in this module graph): one runs per camera. It
writes through the supervisor, which holds the cluster's database connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import ray

from heldar.models.cameras import Camera
from heldar.recording.camera_recorder import CameraRecorder, RecorderOptions
from heldar.recording.records import RecordingBatch

logger = logging.getLogger(__name__)


def camera_actor_name(camera_id: str) -> str:
    return f"camera:{camera_id}"


class SupervisorSink:
    """Writes a camera's batches through the named supervisor actor."""

    def __init__(self, namespace: str, timeout_s: float = 30.0) -> None:
        self.namespace = namespace
        self.timeout_s = timeout_s
        self._handle: Any = None

    def _supervisor(self) -> Any:
        if self._handle is None:
            self._handle = ray.get_actor("supervisor", namespace=self.namespace)
        return self._handle

    async def write(self, batch: RecordingBatch) -> None:
        try:
            await asyncio.wait_for(self._supervisor().write_batch.remote(batch), self.timeout_s)
        except Exception:
            self._handle = None
            raise

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]:
        try:
            return await asyncio.wait_for(  # type: ignore[no-any-return]
                self._supervisor().indexed_sizes.remote(camera_id, file_names), self.timeout_s
            )
        except Exception:
            self._handle = None
            raise


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=32)
class CameraActor:
    def __init__(self, camera: Camera, options: RecorderOptions, namespace: str, version: str) -> None:
        logging.basicConfig(level=logging.INFO)
        self.version = version
        self.recorder = CameraRecorder(camera, options, SupervisorSink(namespace))
        self._task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()

    async def start(self) -> int:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return os.getpid()

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
        report.update(actor_pid=os.getpid(), version=self.version, running=not self._done.is_set())
        return report

    async def watch(self) -> str:
        """Returns when the recorder ends; raises in the caller the moment this actor dies."""
        await self._done.wait()
        return "stopped"

    async def stop(self) -> None:
        self.recorder.stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 20)
