"""``detector:<n>``: a DetectorWorker actor running analyzers on frames sampled by SamplerActors.

Frames arrive as Ray object refs (the sampler ``ray.put``s them, so they travel through the object
store). One frame is analysed at a time per actor (in a thread, so ``stats()`` still answers); callers
beyond that wait in the actor's queue, whose depth is a metric. Analyzers are kept per (camera, task),
so stateful ones (MOG2, trackers) see one camera's frames in order — samplers pin a camera to one
detector. Results go straight to the ``ingest`` actor; the sampler gets a small summary.

``num_gpus=1`` when the cluster has GPUs (``HELDAR_AI_DETECTOR_GPUS`` overrides), CPU otherwise.

A call that never returns (a stuck analyzer) cannot be cancelled inside the process: ``ping``/``stats``
answer ``busy_s`` (how long the current frame has run), the sampler times its call out after
``HELDAR_AI_DETECT_TIMEOUT_S`` and, when the detector is still busy on a frame that long, has Ray replace
the actor (``ray.kill`` with restart; see ``actors/sampler.py``). A restarted detector rebuilds its analyzers
lazily; it holds no other state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import ray

from heldar.logging_setup import setup_actor_logging
from heldar.perception.analyzers import Analyzer, create_analyzer, load_analyzer_specs
from heldar.perception.detections import DetectionBatch
from heldar.perception.metrics import LatencyHistogram

logger = logging.getLogger(__name__)


def detector_name(index: int) -> str:
    return f"detector:{index}"


@ray.remote(max_restarts=-1, max_concurrency=256)
class DetectorWorker:
    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        setup_actor_logging(settings)
        self.name = name
        self.namespace = settings.get("ray_namespace", "heldar")
        load_analyzer_specs(settings.get("ai_analyzers"))
        self.analyzers: dict[tuple[str, str], tuple[str, Analyzer]] = {}
        self.lock = asyncio.Lock()
        self.queued = 0
        self.frames = 0
        self.errors = 0
        self.latency = LatencyHistogram()
        self.busy_since: float | None = None  # monotonic start of the frame being analysed
        self.ingest_failures = 0
        self._ingest: Any = None
        self._pending: set[asyncio.Task[None]] = set()  # strong references to submit watchers

    async def configure(self, settings: dict[str, Any]) -> None:
        """Settings pushed on every fleet start: analyzer registrations are (re)loaded."""
        self.namespace = settings.get("ray_namespace", self.namespace)
        load_analyzer_specs(settings.get("ai_analyzers"))

    def _analyzer(self, camera_id: str, task_id: str, task_type: str, config: str) -> Analyzer:
        key = (camera_id, task_id)
        current = self.analyzers.get(key)
        if current is None or current[0] != task_type + config:
            current = (task_type + config, create_analyzer(task_type, json.loads(config or "{}")))
            self.analyzers[key] = current
        return current[1]

    def _run(self, image: Any, meta: dict[str, Any]) -> list[DetectionBatch]:
        captured_at = datetime.fromtimestamp(meta["captured_at"], UTC)
        ms = int(meta["captured_at"] * 1000)
        batches = []
        for task_id, task_type, config in meta["tasks"]:
            analyzer = self._analyzer(meta["camera_id"], task_id, task_type, config)
            detections = analyzer.analyze(image, captured_at)
            batches.append(
                DetectionBatch(meta["camera_id"], task_type, f"{task_id}:{ms}", captured_at, tuple(detections))
            )
        return batches

    async def analyze(self, image: Any, meta: dict[str, Any]) -> dict[str, Any]:
        """Run every task of ``meta`` on ``image``; detections go to ``ingest``; returns a summary."""
        self.queued += 1
        try:
            async with self.lock:
                started = time.perf_counter()
                self.busy_since = time.monotonic()
                try:
                    batches = await asyncio.to_thread(self._run, image, meta)
                except Exception as exc:
                    self.errors += 1
                    logger.warning("analysis failed on %s: %s", meta.get("camera_id"), exc)
                    return {"ok": False, "error": exc.__class__.__name__}
                finally:
                    self.busy_since = None
                elapsed = time.perf_counter() - started
        finally:
            self.queued -= 1
        self.frames += 1
        self.latency.observe(elapsed)
        with_detections = [b for b in batches if b.detections]
        if with_detections:
            self._submit(with_detections)
        return {"ok": True, "detections": sum(len(b.detections) for b in batches), "seconds": elapsed}

    def _submit(self, batches: list[DetectionBatch]) -> None:
        from actors.ingest import get_ingest

        for _ in range(2):
            if self._ingest is None:
                self._ingest = get_ingest(self.namespace)
            if self._ingest is None:
                logger.warning("no ingest actor; %d batches dropped", len(batches))
                return
            try:
                ref = self._ingest.submit.remote(batches)
            except Exception:
                self._ingest = None
                continue
            task = asyncio.get_running_loop().create_task(self._watch(ref, len(batches)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return

    async def _watch(self, ref: Any, frames: int) -> None:
        """Count batches the ingest actor never took (it died or restarted mid-call)."""
        try:
            await asyncio.wait_for(ref, 30)
        except Exception as exc:
            self.ingest_failures += frames
            self._ingest = None
            logger.warning("ingest did not take %d batches: %s", frames, exc.__class__.__name__)

    def _busy_s(self) -> float | None:
        since = self.busy_since
        return None if since is None else time.monotonic() - since

    async def ping(self) -> dict[str, Any]:
        return {"ok": True, "role": "detector", "name": self.name, "pid": os.getpid(), "busy_s": self._busy_s()}

    async def stats(self) -> dict[str, Any]:
        return {"name": self.name, "queue_depth": self.queued, "frames": self.frames, "errors": self.errors,
                "analyzers": len(self.analyzers), "latency": self.latency.snapshot(), "pid": os.getpid(),
                "busy_s": self._busy_s(), "ingest_failures": self.ingest_failures}  # fmt: skip


def detector_resources(settings_gpus: float | None) -> dict[str, float]:
    """``num_gpus`` 1 when the cluster has a GPU (or the setting), else one CPU per detector."""
    gpus = settings_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return {"num_gpus": gpus, "num_cpus": 0 if gpus else 1}


def ensure_detectors(namespace: str, count: int, settings: dict[str, Any], gpus: float | None) -> list[Any]:
    """The ``detector:<n>`` actors (created if missing), with ``settings`` pushed to each."""
    resources = detector_resources(gpus)
    handles = []
    for i in range(count):
        name = detector_name(i)
        handle = DetectorWorker.options(  # type: ignore[attr-defined]
            name=name, namespace=namespace, lifetime="detached", get_if_exists=True, **resources
        ).remote(name, settings)
        handle.configure.remote(settings)
        handles.append(handle)
    return handles


def get_detectors(namespace: str, count: int) -> list[Any]:
    found = []
    for i in range(count):
        try:
            found.append(ray.get_actor(detector_name(i), namespace=namespace))
        except ValueError:
            continue
    return found
