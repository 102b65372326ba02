"""``sampler:<camera>:<profile>``: decode one camera stream at its granted fps/width, feed detectors.

* The stream is decoded by PyAV in a thread (RTSP over TCP with a socket timeout); kept frames are
  scaled to the granted width. The latest frame stays in memory for ``GET /cameras/{id}/frame``.
* Each kept frame is ``ray.put`` into the object store and sent to the camera's detector (a stable hash
  of camera and profile picks one of ``detector:<n>``, so stateful analyzers see frames in order), with
  at most ``HELDAR_AI_MAX_IN_FLIGHT`` frames out and ``HELDAR_AI_MAX_PENDING`` waiting. When detectors
  fall behind, the oldest waiting frame is dropped and counted: memory stays flat, and recording (its
  own ffmpeg in the camera actor) never waits on any of this.

:class:`PerceptionFleet` (run by the supervisor) turns enabled tasks into sampler units, asks the budget
allocator for grants, and starts, reconfigures, adopts or stops samplers to match.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import ray

from config import Settings
from heldar.logging_setup import setup_actor_logging
from heldar.perception.budget import UnitRequest, allocate
from heldar.perception.sampling import FrameReader, FrameWindow, SampledFrame

logger = logging.getLogger(__name__)

FPS_WINDOW_S = 10.0


def sampler_name(camera_id: str, profile: str) -> str:
    return f"sampler:{camera_id}:{profile}"


def unit_signature(unit: dict[str, Any]) -> str:
    return repr((unit["url"], round(unit["fps"], 4), unit["width"], tuple(map(tuple, unit["tasks"]))))


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=64)
class SamplerActor:
    def __init__(self, unit: dict[str, Any], settings: dict[str, Any]) -> None:
        setup_actor_logging(settings, camera_id=unit.get("camera_id"))
        self.settings = settings
        self.camera_id = unit["camera_id"]
        self.profile = unit["profile"]
        self.unit = unit
        self.namespace = settings.get("ray_namespace", "heldar")
        self.window: FrameWindow[SampledFrame] = FrameWindow(
            settings.get("ai_max_in_flight", 2), settings.get("ai_max_pending", 1)
        )
        self.reader: FrameReader | None = None
        self.latest: SampledFrame | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self.times: collections.deque[float] = collections.deque()
        self.detections = 0
        self.results = 0
        self.errors = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._detector: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> dict[str, Any]:
        self.loop = asyncio.get_running_loop()
        self._start_reader()
        return await self.stats()

    def _start_reader(self) -> None:
        self.reader = FrameReader(
            self.unit["url"], self.unit["fps"], self.unit["width"], self._from_thread,
            timeout_s=float(self.settings.get("rtsp_timeout_s", 5.0)),
        )  # fmt: skip
        self.reader.start()

    async def reconfigure(self, unit: dict[str, Any]) -> dict[str, Any]:
        """New grant or tasks: restart only the decoder (the actor, its counters and latest frame stay)."""
        if unit_signature(unit) != unit_signature(self.unit):
            old, self.unit = self.reader, unit
            if old is not None:
                await asyncio.to_thread(old.stop)
            self.times.clear()
            self._detector = None
            self._start_reader()
        return await self.stats()

    async def signature(self) -> str:
        return unit_signature(self.unit)

    def _from_thread(self, frame: SampledFrame) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._on_frame, frame)

    def _on_frame(self, frame: SampledFrame) -> None:
        self.latest = frame
        now = time.monotonic()
        self.times.append(now)
        while self.times and now - self.times[0] > FPS_WINDOW_S:
            self.times.popleft()
        if not self.unit["tasks"]:
            return
        for ready in self.window.offer(frame):
            self._spawn(ready)

    def _spawn(self, frame: SampledFrame) -> None:
        task = asyncio.get_running_loop().create_task(self._dispatch(frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pick_detector(self) -> Any:
        if self._detector is None:
            from actors.detector import detector_name

            count = int(self.settings.get("ai_detector_workers", 1))
            index = zlib.crc32(f"{self.camera_id}:{self.profile}".encode()) % max(1, count)
            self._detector = ray.get_actor(detector_name(index), namespace=self.namespace)
        return self._detector

    async def _dispatch(self, frame: SampledFrame) -> None:
        try:
            ref = ray.put(frame.image)
            meta = {"camera_id": self.camera_id, "profile": self.profile, "seq": frame.seq,
                    "captured_at": frame.captured_at.timestamp(), "tasks": self.unit["tasks"]}  # fmt: skip
            result = await self._pick_detector().analyze.remote(ref, meta)
            self.results += 1
            self.detections += int(result.get("detections", 0))
        except Exception as exc:
            self.errors += 1
            self._detector = None
            logger.warning("sampler %s/%s: detector call failed: %s", self.camera_id, self.profile, exc)
            await asyncio.sleep(0.5)
        finally:
            for ready in self.window.done():
                self._spawn(ready)

    async def latest_frame(self) -> dict[str, Any] | None:
        """The newest sampled frame as JPEG (encoded once per frame), with its capture time."""
        frame = self.latest
        if frame is None:
            return None
        if self._jpeg is None or self._jpeg[0] != frame.seq:
            import cv2

            ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if not ok:
                return None
            self._jpeg = (frame.seq, buf.tobytes())
        return {"jpeg": self._jpeg[1], "captured_at": frame.captured_at, "seq": frame.seq,
                "width": frame.image.shape[1], "height": frame.image.shape[0]}  # fmt: skip

    async def stats(self) -> dict[str, Any]:
        reader = self.reader
        span = (self.times[-1] - self.times[0]) if len(self.times) > 1 else 0.0
        fps_actual = (len(self.times) - 1) / span if span > 0 else 0.0
        age = None
        if self.latest is not None:
            age = (datetime.now(UTC) - self.latest.captured_at).total_seconds() * 1000
        return {
            "camera_id": self.camera_id, "profile": self.profile, "state": reader.state if reader else "stopped",
            "fps": self.unit["fps"], "width": self.unit["width"], "fps_actual": round(fps_actual, 3),
            "frames_sampled": reader.sampled if reader else 0, "frames_decoded": reader.decoded if reader else 0,
            "frames_dropped": self.window.dropped, "in_flight": self.window.in_flight,
            "pending": len(self.window.pending), "results": self.results, "detections": self.detections,
            "errors": self.errors, "reconnects": reader.reconnects if reader else 0,
            "last_error": reader.last_error if reader else None, "frame_age_ms": age,
            "tasks": [t[0] for t in self.unit["tasks"]], "rss_bytes": _rss_bytes(),
        }  # fmt: skip

    async def stop(self) -> None:
        if self.reader is not None:
            await asyncio.to_thread(self.reader.stop)


def _rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def get_sampler(namespace: str, camera_id: str, profile: str) -> Any | None:
    try:
        return ray.get_actor(sampler_name(camera_id, profile), namespace=namespace)
    except ValueError:
        return None


class PerceptionFleet:
    """Samplers, detectors and the ingest actor in line with the enabled tasks and the budget."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.last_state: dict[tuple[str, str], str | None] = {}
        self.settings = settings
        self.database_url = database_url
        self.namespace = settings.ray_namespace
        self.samplers: dict[tuple[str, str], tuple[str, Any]] = {}  # key → (signature, handle)
        self.grants: dict[tuple[str, str], dict[str, Any]] = {}
        self.infrastructure = False
        self._lock = asyncio.Lock()

    async def _ensure_infrastructure(self) -> None:
        if self.infrastructure:
            return
        from actors.detector import ensure_detectors
        from actors.ingest import ensure_ingest

        ingest = ensure_ingest(self.settings, self.database_url)
        await ingest.start.remote()
        ensure_detectors(self.namespace, self.settings.ai_detector_workers, self.settings.model_dump(mode="json"),
                         self.settings.ai_detector_gpus)  # fmt: skip
        self.infrastructure = True

    async def reconcile(self, pool: Any) -> dict[str, Any]:
        from heldar.store import cameras as camera_store
        from heldar.store import perception as perception_store

        async with self._lock:
            units = await perception_store.sampler_units(pool) if self.settings.ai_enabled else []
            cameras = {c.id: c for c in await camera_store.list_cameras(pool, [u.camera_id for u in units])}
            requests = [UnitRequest(u.camera_id, u.profile, u.fps, u.width, u.priority) for u in units]
            grants = {g.key: g for g in allocate(requests, self.settings.ai_max_total_fps)}
            desired: dict[tuple[str, str], dict[str, Any]] = {}
            self.grants = {}
            for unit in units:
                grant, camera = grants[unit.key], cameras.get(unit.camera_id)
                url = camera and (camera.stream_url(unit.profile) or camera.record_url())  # type: ignore[arg-type]
                self.grants[unit.key] = {"camera_id": unit.camera_id, "stream_profile": unit.profile,
                                         "fps": grant.fps, "width": grant.width, "state": grant.state}  # fmt: skip
                if grant.fps <= 0 or not url:
                    continue
                tasks = [list(t) for t in unit.tasks]
                desired[unit.key] = {"camera_id": unit.camera_id, "profile": unit.profile, "url": url,
                                     "fps": grant.fps, "width": grant.width, "tasks": tasks}  # fmt: skip
            if desired:
                await self._ensure_infrastructure()
            started, stopped, changed = [], [], []
            for key in [k for k in self.samplers if k not in desired]:
                await self._stop(key)
                stopped.append(key)
            for key, unit in desired.items():
                signature = unit_signature(unit)
                current = self.samplers.get(key)
                if current is not None and current[0] == signature:
                    continue
                handle = current[1] if current else None
                if handle is None:
                    handle = get_sampler(self.namespace, *key)  # adopt after a supervisor restart
                if handle is None:
                    handle = SamplerActor.options(  # type: ignore[attr-defined]
                        name=sampler_name(*key), namespace=self.namespace, lifetime="detached",
                    ).remote(unit, self.settings.model_dump(mode="json"))  # fmt: skip
                    await handle.start.remote()
                    started.append(key)
                else:
                    with contextlib.suppress(Exception):
                        if await handle.signature.remote() != signature:
                            await handle.reconfigure.remote(unit)
                            changed.append(key)
                self.samplers[key] = (signature, handle)
            if started or stopped or changed:
                logger.info("perception reconciled: start=%s stop=%s reconfigure=%s", started, stopped, changed)
            return {"start": started, "stop": stopped, "reconfigure": changed}

    async def _stop(self, key: tuple[str, str]) -> None:
        entry = self.samplers.pop(key, None)
        if entry is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(entry[1].stop.remote(), 10)
        with contextlib.suppress(Exception):
            ray.kill(entry[1], no_restart=True)

    async def status(self) -> list[dict[str, Any]]:
        return list(self.grants.values())

    async def report_offline(self, pool: Any) -> int:
        """A ``sampler_offline`` event when a sampler goes from sampling to offline (once per outage)."""
        from heldar.store.events import insert_event

        reported = 0
        for key, (_, handle) in list(self.samplers.items()):
            try:
                stats = await asyncio.wait_for(handle.stats.remote(), 5)
            except Exception:
                stats = {"state": "offline", "last_error": "sampler actor not answering"}
            # Between reconnect attempts a reader flips between offline and connecting: either counts as
            # down once it has failed at least once; a fresh reader still connecting does not.
            raw = stats.get("state")
            state = (
                "sampling" if raw == "sampling" else "offline" if raw == "offline" or stats.get("reconnects") else raw
            )
            previous = self.last_state.get(key)
            self.last_state[key] = state
            if state == "offline" and previous == "sampling":
                payload = {"stream_profile": key[1], "error": stats.get("last_error")}
                await insert_event(pool, "sampler_offline", camera_id=key[0], severity="warning", payload=payload)
                reported += 1
        return reported

    async def shutdown(self, *, infrastructure: bool = True) -> None:
        for key in list(self.samplers):
            await self._stop(key)
        if infrastructure and self.infrastructure:
            from actors.detector import get_detectors
            from actors.ingest import get_ingest

            ingest = get_ingest(self.namespace)
            if ingest is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ingest.shutdown.remote(), 10)
                ray.kill(ingest, no_restart=True)
            for handle in get_detectors(self.namespace, self.settings.ai_detector_workers):
                ray.kill(handle, no_restart=True)
            self.infrastructure = False
