"""CameraActor ``camera:<id>``: a thin Ray shell around ``CameraRecorder``.

Kept light on purpose (no asyncpg, OpenCV or FastAPI in this module graph): one runs per camera. It holds no
database connection: batches go to the ``recording-writer`` actors (the data plane), never through the
supervisor, so recording, indexing and ANR go on while the supervisor restarts. The recorder starts from the
constructor: an actor that exists is recording, whoever created it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ray

from heldar.logging_setup import setup_actor_logging
from heldar.models.cameras import Camera
from heldar.recording.backfill import FillResult, GapSink
from heldar.recording.camera_recorder import CameraRecorder, RecorderOptions
from heldar.recording.gap_filler import GapFiller
from heldar.recording.records import RecordingBatch
from heldar.supervision.budget import writer_for

logger = logging.getLogger(__name__)


# actors.writer's names, not imported from there: that module brings the database driver and the settings into
# every camera process (tests/unit/test_camera_actor_imports.py keeps the two in step).
WRITER_PREFIX = "recording-writer"


def writer_name(index: int) -> str:
    return f"{WRITER_PREFIX}:{index}"


def camera_actor_name(camera_id: str) -> str:
    return f"camera:{camera_id}"


ROOT_MARKER = ".heldar-root"


class RecordingsRootNotShared(RuntimeError):
    """The node this camera actor landed on cannot see the cluster's recordings root."""


def check_recordings_root(root: Path, node_id: str) -> None:
    """Refuse to record on a node that does not see the shared recordings root (the supervisor writes a marker
    there when it becomes active): footage written to a node-local folder would be invisible to the API, the
    indexer of the next node and retention."""
    if not (root / ROOT_MARKER).is_file():
        raise RecordingsRootNotShared(
            f"node {node_id[:12]} cannot see the recordings root {root} (no {ROOT_MARKER}): "
            "mount the same shared volume (RWX, NFS) at the same path on every node"
        )


class WriterSink(GapSink):
    """Writes a camera's batches (and ANR bookkeeping) through the ``recording-writer`` actors.

    The camera's own writer first (a stable hash), the others in turn when it fails; the caller keeps the
    batch and retries when all of them fail (the database is down)."""

    def __init__(self, camera_id: str, namespace: str, writers: int, timeout_s: float = 30.0) -> None:
        self.camera_id = camera_id
        self.namespace = namespace
        self.writers = max(1, writers)
        self.timeout_s = timeout_s
        self._handles: dict[int, Any] = {}

    def _writer(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = ray.get_actor(writer_name(index), namespace=self.namespace)
        return self._handles[index]

    async def _call(self, method: str, *args: Any) -> Any:
        error: BaseException | None = None
        for attempt in range(self.writers):
            index = writer_for(self.camera_id, self.writers, attempt)
            try:
                return await asyncio.wait_for(getattr(self._writer(index), method).remote(*args), self.timeout_s)
            except Exception as exc:
                error = exc
                if not isinstance(exc, ray.exceptions.RayTaskError):  # a dead or missing writer: look it up anew
                    self._handles.pop(index, None)
        assert error is not None
        raise error

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


class _FillSink:
    """The writer sink for the ANR filler, which also wakes the camera's indexer once a fill is recorded (the
    filled file is in the timeline folder now)."""

    def __init__(self, sink: WriterSink, on_fill: Callable[[], None]) -> None:
        self._sink = sink
        self._on_fill = on_fill

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    async def record_fill(self, camera_id: str, gap_id: str, started_at: datetime, result: FillResult) -> Any:
        try:
            return await self._sink.record_fill(camera_id, gap_id, started_at, result)
        finally:
            self._on_fill()


@dataclass(frozen=True, slots=True)
class RecorderStart:
    """What the supervisor hands a new recorder of one camera, in a camera actor or a recorder host."""

    camera: Camera
    options: RecorderOptions
    version: str  # the unit's version digest (a changed one means a new recorder)
    anr_interval_s: float | None = None  # None: ANR back-fill off
    writers: int = 1  # how many recording-writer actors share the data plane
    live_version: str = ""  # settings applied without a new ffmpeg
    startup_gap_cause: str | None = None  # why footage was lost before this recorder (node_lost: ..., crash)


class CameraRuntime:
    """One camera's recorder, ANR filler and their tasks inside some actor process: a ``CameraActor`` holds one,
    a ``RecorderHost`` several. Everything the supervisor asks of a camera goes through here."""

    def __init__(self, start: RecorderStart, namespace: str, *, node_id: str = "", node_ip: str = "") -> None:
        camera, options, anr_interval_s = start.camera, start.options, start.anr_interval_s
        self.node_id = node_id
        self.node_ip = node_ip
        self.version = start.version
        self.live_version = start.live_version
        self.sink = WriterSink(camera.id, namespace, start.writers)
        self.recorder = CameraRecorder(camera, options, self.sink, startup_gap_cause=start.startup_gap_cause)
        self.recorder.node = f"{node_ip}/{node_id[:12]}"  # the Ray node, not just the host name
        self.filler = GapFiller(
            camera, self.recorder.camera_dir, _FillSink(self.sink, self.recorder.wake_indexer),
            interval_s=anr_interval_s or 300.0,
            rtsp_timeout_s=options.rtsp_timeout_s,
        )  # fmt: skip
        self.anr_interval_s = anr_interval_s
        self._done = asyncio.Event()
        # Started here, not by a later call: whoever created this runtime, it records. Strong references keep
        # the tasks alive.
        loop = asyncio.get_event_loop()
        self.task: asyncio.Task[None] = loop.create_task(self._run(), name=f"camera:{camera.id}")
        self._anr_task: asyncio.Task[None] | None = None
        self._set_anr(anr_interval_s)

    @property
    def camera_id(self) -> str:
        return self.recorder.camera.id

    def _set_anr(self, interval_s: float | None) -> None:
        if self._anr_task is not None and (interval_s is None or interval_s != self.anr_interval_s):
            self._anr_task.cancel()
            self._anr_task = None
        self.anr_interval_s = interval_s
        if interval_s is not None and self._anr_task is None:
            self.filler.interval_s = interval_s
            self._anr_task = asyncio.get_event_loop().create_task(self.filler.run())

    async def update_camera(self, camera: Camera, live_version: str, anr_interval_s: float | None) -> None:
        self.recorder.update_camera(camera)
        self.filler.camera = camera
        self.live_version = live_version
        self._set_anr(anr_interval_s)

    async def fill_now(self, gap: dict[str, Any]) -> Any:
        return await self.filler.fill_one(gap)

    async def _run(self) -> None:
        try:
            await self.recorder.run()
        except Exception:
            logger.exception("camera %s: recorder crashed", self.camera_id)
            raise
        finally:
            self._done.set()

    def health(self) -> dict[str, Any]:
        report = self.recorder.health()
        report.update(
            actor_pid=os.getpid(), version=self.version, live_version=self.live_version,
            node_id=self.node_id, node_ip=self.node_ip,
            running=not self._done.is_set(),
            anr={"enabled": self._anr_task is not None, "attempts": self.filler.attempts,
                 "filled": self.filler.filled, "busy_gap": self.filler.busy_gap},
        )  # fmt: skip
        return report

    async def watch(self) -> str:
        await self._done.wait()
        return "stopped"

    async def stop(self, reason: str = "stopped") -> None:
        """A clean stop: ffmpeg closes its segment, the last files are indexed, the final status is flushed."""
        if self._anr_task is not None:
            self._anr_task.cancel()
        self.recorder.stop(reason)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.task), 20)

    async def kill(self) -> None:
        """What ``ray.kill`` is to a camera actor, for one camera of a shared process: its tasks end now and its
        ffmpeg is SIGKILLed; nothing is flushed (the next recorder re-reads the files from disk)."""
        if self._anr_task is not None:
            self._anr_task.cancel()
        self.task.cancel()
        ffmpeg = self.recorder.ffmpeg
        if ffmpeg is not None:
            with contextlib.suppress(Exception):
                ffmpeg.kill()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        self._done.set()


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=32)
class CameraActor:
    def __init__(self, start: RecorderStart, namespace: str, log_level: str = "INFO") -> None:
        setup_actor_logging(level=log_level, camera_id=start.camera.id)
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        check_recordings_root(start.options.recordings_root, self.node_id)
        self.runtime = CameraRuntime(start, namespace, node_id=self.node_id, node_ip=self.node_ip)
        self.recorder = self.runtime.recorder

    async def start(self) -> int:
        """Kept for callers that wait until the actor is up; the recorder already runs."""
        return os.getpid()

    async def update_camera(self, camera: Camera, live_version: str, anr_interval_s: float | None) -> None:
        """Settings that need no new ffmpeg (name, retention, ANR, pre/post-roll), applied without a gap."""
        await self.runtime.update_camera(camera, live_version, anr_interval_s)

    async def fill_now(self, gap: dict[str, Any]) -> Any:
        """One ANR attempt at ``gap`` right away (manual trigger); returns the updated gap row."""
        return await self.runtime.fill_now(gap)

    async def health(self) -> dict[str, Any]:
        return self.runtime.health()

    async def watch(self) -> str:
        """Returns when the recorder ends; raises in the caller the moment this actor dies."""
        return await self.runtime.watch()

    async def stop(self, reason: str = "stopped") -> None:
        await self.runtime.stop(reason)
