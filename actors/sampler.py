"""``sampler:<camera>:<profile>``: decode one camera stream at its granted fps/width, feed detectors.

* The stream is decoded by PyAV in a thread (RTSP over TCP with a socket timeout); kept frames are
  scaled to the granted width. The latest frame stays in memory for ``GET /cameras/{id}/frame``.
* Each kept frame is ``ray.put`` into the object store and sent to the camera's detector (a stable hash
  of camera and profile picks one of ``detector:<n>``, so stateful analyzers see frames in order), with
  at most ``HELDAR_AI_MAX_IN_FLIGHT`` frames out and ``HELDAR_AI_MAX_PENDING`` waiting. When detectors
  fall behind, the oldest waiting frame is dropped and counted: memory stays flat, and recording (its
  own ffmpeg in the camera actor) never waits on any of this.
* A detector call is given ``HELDAR_AI_DETECT_TIMEOUT_S``; a frame that runs out is dropped with cause
  ``timeout``, and a detector still busy on one frame that long is hung: the sampler has Ray replace it
  (``ray.kill`` with restart) and counts the replacement.
* The actor heals itself: the constructor starts the decoder, so a Ray restart after ``SIGKILL`` samples
  again with nobody calling it; ``ping`` says whether the decoder thread runs. The fleet pushes the unit
  and settings on every reconcile (``ensure``), so a restarted actor never keeps a stale grant.

:class:`PerceptionFleet` (run by the supervisor) carries out the plan of ``heldar.perception.fleet``: it
starts, reconfigures, adopts, health-checks or stops samplers, detectors and the ingest actor to match.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import ray

from config import Settings
from heldar.logging_setup import setup_actor_logging
from heldar.perception.fleet import SettingsStamp, plan_samplers, sampler_health_state, unit_signature
from heldar.perception.lifecycle import ALIVE, STARTABLE, UnitLifecycle, UnitState, is_hung
from heldar.perception.lifecycle import unit as perception_unit
from heldar.perception.sampling import FrameReader, FrameWindow, SampledFrame

logger = logging.getLogger(__name__)

FPS_WINDOW_S = 10.0
REPLACE_COOLDOWN_S = 30.0  # one sampler asks for at most one replacement of a detector per this period

__all__ = ["PerceptionFleet", "SamplerActor", "get_sampler", "sampler_name", "unit_signature"]


def sampler_name(camera_id: str, profile: str) -> str:
    return f"sampler:{camera_id}:{profile}"


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
        self.timeouts = 0
        self.detector_replacements = 0
        self._replaced_at: dict[str, float] = {}
        self._detector: Any = None
        self._detector_index = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop = asyncio.get_event_loop()
        self._start_reader()  # self-healing: a Ray restart samples again without anyone calling start()

    async def start(self) -> dict[str, Any]:
        """Idempotent: the constructor started the decoder; restarts it only if its thread died."""
        if not self._reader_alive():
            self._start_reader()
        return await self.stats()

    async def ensure(self, unit: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        """The fleet's push on every reconcile: adopt ``settings`` and ``unit`` (reconfigure only on change)."""
        if SettingsStamp.of(settings).digest != SettingsStamp.of(self.settings).digest:
            self.settings = settings
            self.namespace = settings.get("ray_namespace", self.namespace)
            self.window.max_in_flight = settings.get("ai_max_in_flight", self.window.max_in_flight)
            self.window.max_pending = settings.get("ai_max_pending", self.window.max_pending)
            self._detector = None
        if unit_signature(unit) != unit_signature(self.unit):
            return await self.reconfigure(unit)
        return await self.start()

    def _reader_alive(self) -> bool:
        thread = self.reader._thread if self.reader is not None else None
        return thread is not None and thread.is_alive()

    def _start_reader(self) -> None:
        self.reader = FrameReader(
            self.unit["url"], self.unit["fps"], self.unit["width"], self._from_thread,
            timeout_s=float(self.settings.get("rtsp_timeout_s", 5.0)),
        )  # fmt: skip
        self.reader.start()

    async def reconfigure(self, unit: dict[str, Any]) -> dict[str, Any]:
        """New grant or tasks: restart only the decoder (the actor, its counters and latest frame stay)."""
        if unit_signature(unit) != unit_signature(self.unit) or not self._reader_alive():
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
        self.loop.call_soon_threadsafe(self._on_frame, frame)

    def _on_frame(self, frame: SampledFrame) -> None:
        self.latest = frame
        # the rate is measured on the frames' capture times: the decoder may hand them over in bursts
        now = frame.captured_at.timestamp()
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
            self._detector_index = zlib.crc32(f"{self.camera_id}:{self.profile}".encode()) % max(1, count)
            self._detector = ray.get_actor(detector_name(self._detector_index), namespace=self.namespace)
        return self._detector

    async def _dispatch(self, frame: SampledFrame) -> None:
        timeout = float(self.settings.get("ai_detect_timeout_s", 10.0))
        detector = None
        try:
            ref = ray.put(frame.image)
            meta = {"camera_id": self.camera_id, "profile": self.profile, "seq": frame.seq,
                    "captured_at": frame.captured_at.timestamp(), "tasks": self.unit["tasks"]}  # fmt: skip
            detector = self._pick_detector()
            result = await asyncio.wait_for(detector.analyze.remote(ref, meta), timeout)
            self.results += 1
            self.detections += int(result.get("detections", 0))
        except TimeoutError:
            self.timeouts += 1
            logger.warning("sampler %s/%s: detector call ran past %.1f s; frame dropped", self.camera_id,
                           self.profile, timeout)  # fmt: skip
            if detector is not None:
                await self._replace_if_hung(detector, timeout)
        except Exception as exc:
            self.errors += 1
            self._detector = None
            logger.warning("sampler %s/%s: detector call failed: %s", self.camera_id, self.profile,
                           exc.__class__.__name__)  # fmt: skip
            await asyncio.sleep(0.5)
        finally:
            for ready in self.window.done():
                self._spawn(ready)

    async def _replace_if_hung(self, detector: Any, timeout: float) -> None:
        """Ask the detector how long its current frame has run; if that long (or no answer), replace it."""
        from actors.detector import detector_name

        name = detector_name(self._detector_index)
        if time.monotonic() - self._replaced_at.get(name, -REPLACE_COOLDOWN_S) < REPLACE_COOLDOWN_S:
            return
        try:
            busy = (await asyncio.wait_for(detector.ping.remote(), 5.0)).get("busy_s")
        except Exception:
            busy = float("inf")
        if not is_hung(busy, timeout):
            return
        self._replaced_at[name] = time.monotonic()
        self.detector_replacements += 1
        self._detector = None
        logger.warning("sampler %s/%s: %s is hung (busy %.1f s); replacing it", self.camera_id, self.profile,
                       name, busy)  # fmt: skip
        with contextlib.suppress(Exception):
            ray.kill(detector, no_restart=False)  # Ray restarts it (max_restarts=-1); analyzers rebuild lazily

    async def ping(self) -> dict[str, Any]:
        alive = self._reader_alive()
        return {"ok": alive, "role": "sampler", "pid": os.getpid(), "loops": {"reader": alive},
                "state": self.reader.state if self.reader else "stopped"}  # fmt: skip

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
            "frames_dropped": self.window.dropped + self.timeouts, "in_flight": self.window.in_flight,
            "frames_dropped_by_cause": {"backlog": self.window.dropped, "timeout": self.timeouts},
            "detector_replacements": self.detector_replacements, "pid": os.getpid(),
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
    """Samplers, detectors and the ingest actor in line with the enabled tasks and the budget.

    The supervisor calls ``reconcile(pool)`` (every 10 s and on changes), ``report_offline(pool)``,
    ``status()`` and ``shutdown()``. Each reconcile pushes the settings and units to every actor (idempotent),
    health-checks the ingest actor and the detectors (a hung or dead one is replaced), and keeps a
    :class:`~heldar.supervision.unit.UnitLifecycle` per unit whose state and cause ``units()`` reports.
    """

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.last_state: dict[tuple[str, str], str | None] = {}
        self.settings = settings
        self.database_url = database_url
        self.namespace = settings.ray_namespace
        self.values = settings.for_actors()
        self.samplers: dict[tuple[str, str], tuple[str, Any]] = {}  # key → (signature, handle)
        self.grants: dict[tuple[str, str], dict[str, Any]] = {}
        self.lifecycles: dict[str, UnitLifecycle] = {}
        self.replacements: dict[str, int] = {}
        self.infrastructure = False
        self._lock = asyncio.Lock()

    def _life(self, name: str) -> UnitLifecycle:
        life = self.lifecycles.get(name)
        if life is None:
            life = self.lifecycles[name] = perception_unit(name)
        return life

    def _starting(self, name: str, cause: str) -> None:
        life = self._life(name)
        if life.state in STARTABLE:
            life.begin_start(cause)

    def _running(self, name: str) -> None:
        """The actor answered and its loops run: running (adopted if need be), health failures cleared."""
        life = self._life(name)
        if life.state in STARTABLE:
            life.begin_start("adopted", "found running")
        if life.state is UnitState.STARTING:
            life.started(life.generation)
        life.health_ok()

    async def _ensure_infrastructure(self) -> None:
        """Ingest and detectors exist and run this fleet's settings (pushed on every call: cheap, idempotent)."""
        from actors.detector import detector_name, ensure_detectors
        from actors.ingest import ensure_ingest

        ingest = ensure_ingest(self.settings, self.database_url)
        handles = ensure_detectors(self.namespace, self.settings.ai_detector_workers, self.values,
                                   self.settings.ai_detector_gpus)  # fmt: skip
        await self._check("ingest", ingest, hung=None)
        for i, handle in enumerate(handles):
            await self._check(detector_name(i), handle, hung=self.settings.ai_detect_timeout_s)
        self.infrastructure = True

    async def _check(self, name: str, handle: Any, hung: float | None) -> None:
        """One health check: ``ping`` within 5 s with its loops running (and, for a detector, no call busy past
        the detect timeout); ``HEALTH_FAILURES_TO_REPLACE`` bad answers in a row replace the actor through Ray
        (kill with restart: its constructor rebuilds it)."""
        life = self._life(name)
        try:
            answer = await asyncio.wait_for(handle.ping.remote(), 5.0)
            running = bool(answer.get("ok") or answer.get("starting"))  # starting: e.g. waiting for PostgreSQL
            ok = running and not (hung is not None and is_hung(answer.get("busy_s"), hung))
            reason = None if ok else ("hung" if running else "loops_stopped")
        except Exception as exc:
            ok, reason = False, f"no_answer:{exc.__class__.__name__}"
        if ok:
            self._running(name)
            return
        if life.state not in ALIVE:
            self._running(name)  # first sight of it: count its failures from now on
        if not life.health_failed():
            return
        life.failed(reason or "unhealthy", f"{name} unhealthy ({reason}); replaced")
        self.replacements[name] = self.replacements.get(name, 0) + 1
        logger.warning("perception: %s unhealthy (%s); replacing it", name, reason)
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=False)
        life.begin_start("replaced", "Ray restarts it")

    async def reconcile(self, pool: Any) -> dict[str, Any]:
        from heldar.store import cameras as camera_store
        from heldar.store import perception as perception_store

        async with self._lock:
            units = await perception_store.sampler_units(pool) if self.settings.ai_enabled else []
            cameras = {c.id: c for c in await camera_store.list_cameras(pool, [u.camera_id for u in units])}
            plan = plan_samplers(units, cameras, self.settings.ai_max_total_fps)
            self.grants = plan.grants
            if plan.desired:
                await self._ensure_infrastructure()
            started, stopped, changed = [], [], []
            for key in [k for k in self.samplers if k not in plan.desired]:
                await self._stop(key)
                stopped.append(key)
            pushes: list[tuple[tuple[str, str], str, dict[str, Any], Any]] = []
            for key, unit in plan.desired.items():
                name, signature = sampler_name(*key), unit_signature(unit)
                life = self._life(name)
                current = self.samplers.get(key)
                handle = current[1] if current else get_sampler(self.namespace, *key)  # adopt by name
                if handle is None:
                    if life.state in (UnitState.BACKING_OFF, UnitState.CRASH_LOOP) and not life.restart_due():
                        continue
                    self._starting(name, "created")
                    handle = SamplerActor.options(  # type: ignore[attr-defined]
                        name=name, namespace=self.namespace, lifetime="detached",
                    ).remote(unit, self.values)  # fmt: skip
                    started.append(key)
                elif current is not None and current[0] != signature:
                    changed.append(key)
                self.samplers[key] = (signature, handle)
                pushes.append((key, name, unit, handle))

            async def push(name: str, spec: dict[str, Any], handle: Any) -> None:
                # pushed every time: a Ray-restarted sampler comes back with its creation arguments
                try:
                    await asyncio.wait_for(handle.ensure.remote(spec, self.values), 30)
                    self._running(name)
                except Exception as exc:
                    life = self._life(name)
                    if life.state in STARTABLE:
                        life.begin_start("created")
                    life.failed("ensure_failed", f"{name}: {exc.__class__.__name__}")

            await asyncio.gather(*(push(name, spec, handle) for _, name, spec, handle in pushes))
            if started or stopped or changed:
                logger.info("perception reconciled: start=%s stop=%s reconfigure=%s", started, stopped, changed)
            return {"start": started, "stop": stopped, "reconfigure": changed}

    async def _stop(self, key: tuple[str, str]) -> None:
        entry = self.samplers.pop(key, None)
        self.lifecycles.pop(sampler_name(*key), None)
        if entry is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(entry[1].stop.remote(), 10)
        with contextlib.suppress(Exception):
            ray.kill(entry[1], no_restart=True)

    async def status(self) -> list[dict[str, Any]]:
        return list(self.grants.values())

    def units(self) -> dict[str, dict[str, Any]]:
        """Lifecycle of every unit this fleet runs: state, cause, restarts (and replacements)."""
        return {name: {**life.snapshot(), "replacements": self.replacements.get(name, 0)}
                for name, life in self.lifecycles.items()}  # fmt: skip

    async def report_offline(self, pool: Any) -> int:
        """A ``sampler_offline`` event when a sampler goes from sampling to offline (once per outage)."""
        from heldar.store.events import insert_event

        items = list(self.samplers.items())

        async def ask(handle: Any) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(handle.stats.remote(), 5)  # type: ignore[no-any-return]
            except Exception:
                return {"state": "offline", "last_error": "sampler actor not answering"}

        answers = await asyncio.gather(*(ask(h) for _, (_, h) in items))
        reported = 0
        for (key, _), stats in zip(items, answers, strict=True):
            state = sampler_health_state(stats)
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
