"""Ingest: validate and stamp batches, write them in bulk, fan committed batches out to consumers.

* :func:`prepare_worker_batch` applies the HTTP contract (≤ 1000 detections, bbox in 0..1, event-type
  rules, server-owned ``source``/``_prov`` attributes, frame ids namespaced ``w:``).
* :class:`Ingestor` buffers batches from samplers/detectors and writes them together (one outbox insert
  and one COPY per flush), records frame → row latency, then fans out.
* :class:`FanOut` delivers a committed batch to each registered :class:`DetectionConsumer` **at least
  once**: a frame is marked done for a consumer (``consumer_fanout``) only after ``consume`` returned, and
  the outbox row is marked fanned out only when every consumer finished it. A consumer that fails, or a
  crash mid-delivery, leaves the frame for :meth:`FanOut.replay` (the outbox drainer), which skips the
  consumers that already finished it. Within one process an in-flight set keeps a frame from being handed
  to a consumer twice at once. Consumers are idempotent (the zone engine's per-stream watermark and its
  unique event key), so a redelivery writes nothing twice.
* :class:`Ingestor` keeps a bounded buffer (``max_buffer`` frames; the oldest are dropped and counted
  with cause ``buffer_full``), retries a failed write ``max_attempts`` times with a growing pause and then
  drops those frames counted with cause ``db_error``; its loop never dies of an exception.
"""

from __future__ import annotations

import asyncio
import collections
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
# kernel event types and prefixes a worker may not post (upstream's list plus every kernel family)
RESERVED_EVENT_PREFIXES = (
    "gate_", "entry_", "zone_", "camera_", "disk_", "raid_", "recording_", "recorder_", "sampler_", "detector_",
    "retention_", "anr_", "ingest_", "storage_", "system_", "heldar_", "webhook_", "schedule_", "supervisor_",
)  # fmt: skip
RESERVED_EVENT_TYPES = ("test",)
SERVER_ATTRIBUTES = ("source", "_prov")
FUTURE_SLACK_S = 60.0


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
    if not EVENT_TYPE_RE.match(event_type):
        raise BadRequest("event_type must match ^[a-z0-9_]{1,64}$")
    if event_type.startswith(RESERVED_EVENT_PREFIXES) or event_type in RESERVED_EVENT_TYPES:
        raise BadRequest(f"event_type {event_type!r} uses a prefix reserved for kernel events")


def check_captured_at(captured_at: datetime, now: datetime, max_age_s: float) -> None:
    """A frame time more than ``FUTURE_SLACK_S`` ahead of the server clock, or older than ``max_age_s``
    (the camera's retention horizon), is refused: either would poison or be lost by the zone engine."""
    ahead = (captured_at - now).total_seconds()
    if ahead > FUTURE_SLACK_S:
        raise BadRequest(f"timestamp is {ahead:.0f} s ahead of the server clock (at most {FUTURE_SLACK_S:.0f} s)")
    age = -ahead
    if age > max_age_s:
        raise BadRequest(f"timestamp is {age:.0f} s old, beyond the camera's retention horizon of {max_age_s:.0f} s")


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
    def __init__(self, pool: asyncpg.Pool | None, consumers: Sequence[DetectionConsumer] = ()) -> None:
        self.pool = pool
        self.consumers = list(consumers)
        self.delivered: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.redelivered = 0
        self._inflight: set[tuple[str, str]] = set()

    def add(self, consumer: DetectionConsumer) -> None:
        self.consumers = [c for c in self.consumers if c.name != consumer.name] + [consumer]

    async def deliver(self, batches: Sequence[DetectionBatch], *, fresh: bool = True) -> int:
        """Hand committed batches to each consumer in capture order, then record what finished.

        ``fresh`` batches were just inserted (no consumer can have finished them); otherwise the consumers
        that already finished a frame are skipped. After a consumer fails on a camera's frame, its later
        frames of that camera in this call are left for the replay too, so the consumer sees them in order.
        Returns the frames completed for every consumer."""
        assert self.pool is not None, "fan-out without a pool"
        ordered = sorted(
            (b for b in batches if (b.camera_id, b.frame_id) not in self._inflight),
            key=lambda b: (b.camera_id, b.captured_at),
        )
        if not ordered:
            return 0
        keys = [(b.camera_id, b.frame_id) for b in ordered]
        self._inflight.update(keys)
        try:
            done = {} if fresh else await store.finished_fanout(self.pool, keys)
            complete = set(keys)
            finished: dict[str, list[tuple[str, str]]] = {}
            for consumer in self.consumers:
                already = done.get(consumer.name, set())
                failed_cameras: set[str] = set()
                ok: list[tuple[str, str]] = []
                for batch in ordered:
                    key = (batch.camera_id, batch.frame_id)
                    if key in already:
                        continue
                    if batch.camera_id in failed_cameras:
                        complete.discard(key)
                        continue
                    try:
                        await consumer.consume(batch)
                    except Exception:
                        self.failures[consumer.name] = self.failures.get(consumer.name, 0) + 1
                        failed_cameras.add(batch.camera_id)
                        complete.discard(key)
                        logger.exception("consumer %s failed on %s/%s; left for replay", consumer.name,
                                         batch.camera_id, batch.frame_id)  # fmt: skip
                        continue
                    ok.append(key)
                    self.delivered[consumer.name] = self.delivered.get(consumer.name, 0) + 1
                    if not fresh:
                        self.redelivered += 1
                finished[consumer.name] = ok
            await store.finish_fanout(self.pool, finished, [k for k in keys if k in complete])
            return len(complete)
        finally:
            self._inflight.difference_update(keys)

    async def replay(self, older_than_s: float = 5.0, limit: int = 200) -> int:
        """Fan out committed frames whose fan-out did not finish; returns how many were replayed."""
        assert self.pool is not None
        batches = await store.unfanned_batches(self.pool, older_than_s, limit)
        await self.deliver(batches, fresh=False)
        return len(batches)

    async def tick(self) -> None:
        """Give consumers with a ``tick`` (the zone engine: exits of tracks that went quiet) their turn."""
        for consumer in self.consumers:
            tick = getattr(consumer, "tick", None)
            if tick is None:
                continue
            try:
                await tick()
            except Exception as exc:
                self.failures[consumer.name] = self.failures.get(consumer.name, 0) + 1
                logger.warning("consumer %s tick failed: %s", consumer.name, exc.__class__.__name__)


# --- the buffered writer --------------------------------------------------------------------------
class Ingestor:
    """Buffers batches and writes them in bulk; safe to call ``submit`` from many coroutines."""

    def __init__(
        self,
        pool: asyncpg.Pool | None,
        fanout: FanOut,
        *,
        max_batch: int = 2000,
        max_buffer: int = 20000,
        max_attempts: int = 5,
        retry_base_s: float = 0.5,
    ) -> None:
        self.pool = pool
        self.fanout = fanout
        self.max_batch = max_batch
        self.max_buffer = max_buffer
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.buffer: collections.deque[store.IngestItem] = collections.deque()
        self.wakeup = asyncio.Event()
        self.rows = 0
        self.frames = 0
        self.duplicates = 0
        self.flushes = 0
        self.errors = 0
        self.dropped: dict[str, int] = {}
        self.last_error: str | None = None
        self._attempts = 0  # consecutive failed writes of the head of the buffer
        self.latency = LatencyHistogram()

    def _drop(self, cause: str, frames: int) -> None:
        if frames:
            self.dropped[cause] = self.dropped.get(cause, 0) + frames

    def submit(self, batches: Sequence[DetectionBatch], producer: str = "sampler") -> None:
        for batch in batches:
            kb = kernel_batch(batch, producer)
            self.buffer.append(store.IngestItem(kb, kb.producer, kb.producer))
        over = len(self.buffer) - self.max_buffer
        if over > 0:
            for _ in range(over):
                self.buffer.popleft()
            self._drop("buffer_full", over)
        self.wakeup.set()

    async def flush(self) -> int:
        """Write what is buffered (up to ``max_batch`` frames); returns the frames taken. On a database
        error the frames go back to the head of the buffer (raised again to the caller) until they failed
        ``max_attempts`` times; then they are dropped and counted."""
        assert self.pool is not None, "ingest without a pool"
        items = [self.buffer.popleft() for _ in range(min(self.max_batch, len(self.buffer)))]
        if not items:
            return 0
        try:
            try:
                result = await store.ingest(self.pool, items)
            except asyncpg.ForeignKeyViolationError:  # a camera was deleted meanwhile: keep the others
                known = await store.existing_cameras(self.pool, [i.batch.camera_id for i in items])
                self._drop("camera_deleted", sum(1 for i in items if i.batch.camera_id not in known))
                items = [i for i in items if i.batch.camera_id in known]
                result = await store.ingest(self.pool, items)
        except Exception as exc:
            self.errors += 1
            self._attempts += 1
            self.last_error = exc.__class__.__name__
            if self._attempts >= self.max_attempts:
                self._attempts = 0
                self._drop("db_error", len(items))
                logger.warning("ingest of %d frames failed %d times (%s): dropped", len(items), self.max_attempts,
                               exc.__class__.__name__)  # fmt: skip
            else:
                self.buffer.extendleft(reversed(items))
                over = len(self.buffer) - self.max_buffer
                for _ in range(max(0, over)):
                    self.buffer.pop()  # the newest beyond the bound go: the head is retried
                self._drop("buffer_full", max(0, over))
            raise
        self._attempts = 0
        committed = time.time()
        fresh = [i.batch for i, new in zip(items, result.inserted, strict=True) if new]
        for batch in fresh:
            self.latency.observe(max(0.0, committed - batch.captured_at.timestamp()))
        self.rows += result.rows
        self.frames += len(fresh)
        self.duplicates += len(items) - len(fresh)
        self.flushes += 1
        if fresh:
            try:
                await self.fanout.deliver(fresh)
            except Exception as exc:  # committed: the replay fans these out later
                logger.warning("fan-out of %d frames failed (%s); left for replay", len(fresh),
                               exc.__class__.__name__)  # fmt: skip
        return len(items)

    async def run(self, linger_s: float = 0.01) -> None:
        """Flush loop: wake on submit, linger briefly so concurrent submits share a write. Never dies of an
        exception: a failed write backs off and is retried (bounded, see :meth:`flush`)."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await asyncio.sleep(linger_s)
            while self.buffer:
                try:
                    await self.flush()
                except Exception:
                    await asyncio.sleep(min(10.0, self.retry_base_s * 2 ** max(0, self._attempts - 1)))

    def stats(self) -> dict[str, Any]:
        return {"rows": self.rows, "frames": self.frames, "duplicates": self.duplicates, "flushes": self.flushes,
                "errors": self.errors, "buffered": len(self.buffer), "latency": self.latency.snapshot(),
                "frames_dropped": dict(self.dropped), "last_error": self.last_error,
                "delivered": dict(self.fanout.delivered), "consumer_failures": dict(self.fanout.failures),
                "redelivered": self.fanout.redelivered}  # fmt: skip
