"""Ingest: validate and stamp batches, write them in bulk, fan committed batches out to consumers.

* :func:`prepare_worker_batch` applies the HTTP contract (≤ 1000 detections, bbox in 0..1, event-type
  rules, server-owned ``source``/``_prov`` attributes, frame ids namespaced ``w:``).
* :class:`Ingestor` buffers batches from samplers/detectors and writes them together (one outbox insert
  and one COPY per flush), records frame → row latency, then fans out.
* :class:`FanOut` delivers a committed batch to each registered :class:`DetectionConsumer` at most once:
  it claims (consumer, camera, frame) in ``consumer_fanout`` before calling ``consume``; frames whose
  fan-out never finished (a crash) are replayed by :meth:`FanOut.replay` from the outbox — consumers that
  already claimed them are skipped.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from heldar.errors import BadRequest
from heldar.perception.detections import Detection, DetectionBatch, DetectionConsumer
from heldar.perception.metrics import LatencyHistogram
from heldar.store import perception as store

logger = logging.getLogger(__name__)

MAX_DETECTIONS = 1000
EVENT_TYPE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
RESERVED_EVENT_PREFIXES = ("gate_", "entry_", "zone_", "camera_", "disk_", "raid_")
SERVER_ATTRIBUTES = ("source", "_prov")


def check_bbox(bbox: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    if len(bbox) != 4:
        raise BadRequest("bbox must be [x, y, w, h]")
    x, y, w, h = (float(v) for v in bbox)
    if not all(0.0 <= v <= 1.0 for v in (x, y, w, h)) or x + w > 1.0 + 1e-6 or y + h > 1.0 + 1e-6:
        raise BadRequest("bbox values must lie in 0..1 and the box inside the frame")
    return (x, y, w, h)


def check_event_type(event_type: str) -> None:
    if not EVENT_TYPE_RE.match(event_type) or event_type.startswith(RESERVED_EVENT_PREFIXES):
        raise BadRequest("event_type must match ^[a-z0-9_]{1,64}$ and not use a reserved prefix")


def stamp(det: Detection, source: str, prov: dict[str, Any]) -> Detection:
    attributes = {k: v for k, v in det.attributes.items() if k not in SERVER_ATTRIBUTES}
    attributes["source"] = source
    attributes["_prov"] = prov
    return replace(det, attributes=attributes)


def prepare_worker_batch(
    *, camera_id: str, task_type: str, frame_id: str | None, captured_at: datetime, detections: Sequence[Detection],
    key_id: str, task_id: str | None, worker_id: str | None,
) -> DetectionBatch:  # fmt: skip
    """The server-side batch of an HTTP worker: stamped attributes, ``w:`` frame id (a fresh one if none)."""
    if not task_type:
        raise BadRequest("task_type is required")
    if len(detections) > MAX_DETECTIONS:
        raise BadRequest(f"at most {MAX_DETECTIONS} detections per batch")
    prov = {"key": key_id, "task": task_id, "worker": worker_id}
    stamped = tuple(stamp(d, "worker", prov) for d in detections)
    fid = f"w:{frame_id}" if frame_id else f"w:auto:{time.time_ns()}"
    return DetectionBatch(camera_id, task_type, fid, captured_at.astimezone(UTC), stamped, producer="worker")


def kernel_batch(batch: DetectionBatch, producer: str = "sampler") -> DetectionBatch:
    """A batch from the in-cluster pipeline: ``k:<producer>:`` frame id, stamped ``source=kernel``."""
    prov = {"producer": producer}
    frame_id = batch.frame_id if batch.frame_id.startswith("k:") else f"k:{producer}:{batch.frame_id}"
    return replace(batch, frame_id=frame_id, producer=f"kernel:{producer}",
                   detections=tuple(stamp(d, "kernel", prov) for d in batch.detections))  # fmt: skip


# --- consumers ------------------------------------------------------------------------------------
@dataclass
class ConsumerContext:
    """What a consumer factory gets: the ingest actor's pool and settings (a dict)."""

    pool: asyncpg.Pool | None
    settings: dict[str, Any] = field(default_factory=dict)


ConsumerFactory = Callable[[ConsumerContext], DetectionConsumer]
_CONSUMERS: dict[str, ConsumerFactory] = {}


def register_consumer(name: str, factory: ConsumerFactory) -> None:
    """Register a consumer factory by name (a module doing this is named in ``HELDAR_DETECTION_CONSUMERS``)."""
    _CONSUMERS[name] = factory


def load_consumers(specs: str | None, context: ConsumerContext) -> list[DetectionConsumer]:
    """``HELDAR_DETECTION_CONSUMERS``: comma-separated ``module:factory`` (or a registered name)."""
    consumers: list[DetectionConsumer] = []
    for raw in (specs or "").split(","):
        spec = raw.strip()
        if not spec or spec.lower() == "none":
            continue
        if ":" in spec:
            module_name, _, attr = spec.partition(":")
            factory = getattr(importlib.import_module(module_name), attr)
        else:
            factory = _CONSUMERS[spec]
        consumers.append(factory(context))
    return consumers


class FanOut:
    def __init__(self, pool: asyncpg.Pool, consumers: Sequence[DetectionConsumer] = ()) -> None:
        self.pool = pool
        self.consumers = list(consumers)
        self.delivered: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def add(self, consumer: DetectionConsumer) -> None:
        self.consumers = [c for c in self.consumers if c.name != consumer.name] + [consumer]

    async def deliver(self, batches: Sequence[DetectionBatch]) -> None:
        """Claim then consume, consumer by consumer, in capture order; then mark the outbox rows done."""
        if not batches:
            return
        ordered = sorted(batches, key=lambda b: (b.camera_id, b.captured_at))
        keys = [(b.camera_id, b.frame_id) for b in ordered]
        for consumer in self.consumers:
            try:
                claimed = await store.claim_fanout(self.pool, consumer.name, keys)
            except Exception as exc:  # the claim failed: the frames stay unfanned and are replayed
                logger.warning("fan-out claim for %s failed: %s", consumer.name, exc.__class__.__name__)
                return
            for batch in ordered:
                if (batch.camera_id, batch.frame_id) not in claimed:
                    continue
                try:
                    await consumer.consume(batch)
                    self.delivered[consumer.name] = self.delivered.get(consumer.name, 0) + 1
                except Exception:
                    self.failures[consumer.name] = self.failures.get(consumer.name, 0) + 1
                    logger.exception("consumer %s failed on %s/%s", consumer.name, batch.camera_id, batch.frame_id)
        await store.mark_fanned_out(self.pool, keys)

    async def replay(self, older_than_s: float = 5.0, limit: int = 200) -> int:
        """Fan out committed frames whose fan-out did not finish; returns how many were replayed."""
        batches = await store.unfanned_batches(self.pool, older_than_s, limit)
        await self.deliver(batches)
        return len(batches)


# --- the buffered writer --------------------------------------------------------------------------
class Ingestor:
    """Buffers batches and writes them in bulk; safe to call ``submit`` from many coroutines."""

    def __init__(self, pool: asyncpg.Pool, fanout: FanOut, *, max_batch: int = 2000) -> None:
        self.pool = pool
        self.fanout = fanout
        self.max_batch = max_batch
        self.buffer: list[store.IngestItem] = []
        self.wakeup = asyncio.Event()
        self.rows = 0
        self.frames = 0
        self.duplicates = 0
        self.flushes = 0
        self.errors = 0
        self.latency = LatencyHistogram()

    def submit(self, batches: Sequence[DetectionBatch], producer: str = "sampler") -> None:
        for batch in batches:
            kb = kernel_batch(batch, producer)
            self.buffer.append(store.IngestItem(kb, kb.producer, kb.producer))
        self.wakeup.set()

    async def flush(self) -> int:
        """Write what is buffered (up to ``max_batch`` frames); returns the frames taken."""
        items, self.buffer = self.buffer[: self.max_batch], self.buffer[self.max_batch :]
        if not items:
            return 0
        try:
            result = await store.ingest(self.pool, items)
        except asyncpg.ForeignKeyViolationError:  # a camera was deleted meanwhile: keep the others
            known = await store.existing_cameras(self.pool, [i.batch.camera_id for i in items])
            items = [i for i in items if i.batch.camera_id in known]
            result = await store.ingest(self.pool, items)
        except Exception as exc:
            self.errors += 1
            logger.warning("ingest of %d frames failed: %s: %s", len(items), exc.__class__.__name__, exc)
            return len(items)
        committed = time.time()
        fresh = [i.batch for i, new in zip(items, result.inserted, strict=True) if new]
        for batch in fresh:
            self.latency.observe(max(0.0, committed - batch.captured_at.timestamp()))
        self.rows += result.rows
        self.frames += len(fresh)
        self.duplicates += len(items) - len(fresh)
        self.flushes += 1
        if fresh:
            await self.fanout.deliver(fresh)
        return len(items)

    async def run(self, linger_s: float = 0.01) -> None:
        """Flush loop: wake on submit, linger briefly so concurrent submits share a write."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await asyncio.sleep(linger_s)
            while self.buffer:
                await self.flush()

    def stats(self) -> dict[str, Any]:
        return {"rows": self.rows, "frames": self.frames, "duplicates": self.duplicates, "flushes": self.flushes,
                "errors": self.errors, "buffered": len(self.buffer), "latency": self.latency.snapshot(),
                "delivered": dict(self.fanout.delivered), "consumer_failures": dict(self.fanout.failures)}  # fmt: skip
