"""Ingest: validate and stamp batches, write them in bulk, fan committed batches out to consumers.

* :func:`prepare_worker_batch` applies the HTTP contract (≤ 1000 detections, bbox in 0..1, event-type
  rules, server-owned ``source``/``_prov`` attributes, frame ids namespaced ``w:``).
* :class:`Ingestor` buffers batches from samplers/detectors and writes them together (one outbox insert
  and one COPY per flush), records frame → row latency, then fans out.
* :class:`FanOut` delivers a committed batch to each registered :class:`DetectionConsumer` **at least
  once**: the outbox row is marked fanned out only when every consumer's ``consume`` returned for it; for
  a frame that only some consumers finished, those are recorded in ``consumer_fanout``. A consumer that fails, or a
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
from dataclasses import dataclass, field
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
    (the retention horizon of detections), is refused: one would freeze zones, the other be pruned at once."""
    ahead = (captured_at - now).total_seconds()
    if ahead > FUTURE_SLACK_S:
        raise BadRequest(f"timestamp is {ahead:.0f} s ahead of the server clock (at most {FUTURE_SLACK_S:.0f} s)")
    age = -ahead
    if age > max_age_s:
        raise BadRequest(f"timestamp is {age:.0f} s old, beyond the retention horizon of {max_age_s:.0f} s")


def stamp(det: Detection, source: str, prov: dict[str, Any]) -> Detection:
    """The detection with the server's ``source`` and ``_prov`` (a client's own values are overwritten)."""
    return Detection(det.label, det.confidence, det.bbox, det.track_id, {**det.attributes, "source": source,
                                                                          "_prov": prov})  # fmt: skip


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
    """A batch from the in-cluster pipeline: ``k:<producer>:`` frame id, producer ``kernel:<producer>``. Its
    rows are stamped ``source=kernel`` and ``_prov`` as they are written (see :func:`kernel_item`)."""
    frame_id = batch.frame_id if batch.frame_id.startswith("k:") else f"k:{producer}:{batch.frame_id}"
    return DetectionBatch(batch.camera_id, batch.task_type, frame_id, batch.captured_at, batch.detections,
                          f"kernel:{producer}")  # fmt: skip


def kernel_item(batch: DetectionBatch, producer: str = "sampler") -> store.IngestItem:
    """The ingest item of a kernel batch; the server attributes are merged into each row at write time (one
    dict per row, no per-detection copies on the way)."""
    kb = kernel_batch(batch, producer)
    return store.IngestItem(kb, kb.producer, kb.producer, {"source": "kernel", "_prov": {"producer": producer}})


# --- consumers ------------------------------------------------------------------------------------
@dataclass
class ConsumerContext:
    """What a consumer factory gets: the ingest actor's pool and settings (a dict)."""

    pool: asyncpg.Pool | None
    settings: dict[str, Any] = field(default_factory=dict)
    frame_source: Any = None  # async camera_id -> latest JPEG bytes or None (evidence frames), when available


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
        self.completed = 0  # frames finished by every consumer and marked fanned out
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
        count, finish = await self.deliver_collect(batches, fresh=fresh)
        if finish is not None:
            await store.finish_fanout(self.pool, *finish)
            self.completed += len(finish[1])
        return count

    async def deliver_collect(
        self, batches: Sequence[DetectionBatch], *, fresh: bool = True
    ) -> tuple[int, store.FinishArgs | None]:
        """:meth:`deliver` without writing the bookkeeping: returns it for the caller to write (the ingestor
        puts it into its next transaction)."""
        assert self.pool is not None, "fan-out without a pool"
        ordered = sorted(
            (b for b in batches if (b.camera_id, b.frame_id) not in self._inflight),
            key=lambda b: (b.camera_id, b.captured_at),
        )
        if not ordered:
            return 0, None
        keys = [(b.camera_id, b.frame_id) for b in ordered]
        self._inflight.update(keys)
        try:
            done = {} if fresh else await store.finished_fanout(self.pool, keys)
            complete = set(keys)
            finished: dict[str, list[tuple[str, str]]] = {}
            by_camera: dict[str, list[DetectionBatch]] = {}
            for batch in ordered:
                by_camera.setdefault(batch.camera_id, []).append(batch)
            for consumer in self.consumers:
                already = done.get(consumer.name, set())
                ok: list[tuple[str, str]] = []

                async def chain(
                    camera_batches: list[DetectionBatch],
                    consumer: DetectionConsumer = consumer,
                    already: set[tuple[str, str]] = already,
                    ok: list[tuple[str, str]] = ok,
                ) -> None:
                    """One camera's frames in capture order; after a failure the rest wait for the replay."""
                    failed = False
                    for batch in camera_batches:
                        key = (batch.camera_id, batch.frame_id)
                        if key in already:
                            continue
                        if failed:
                            complete.discard(key)
                            continue
                        try:
                            await consumer.consume(batch)
                        except Exception:
                            self.failures[consumer.name] = self.failures.get(consumer.name, 0) + 1
                            failed = True
                            complete.discard(key)
                            logger.exception("consumer %s failed on %s/%s; left for replay", consumer.name,
                                             batch.camera_id, batch.frame_id)  # fmt: skip
                            continue
                        ok.append(key)
                        self.delivered[consumer.name] = self.delivered.get(consumer.name, 0) + 1
                        if not fresh:
                            self.redelivered += 1

                # cameras run side by side (each in order): one slow camera does not hold up the others
                await asyncio.gather(*(chain(group) for group in by_camera.values()))
                finished[consumer.name] = ok
            # the ledger matters only for frames some consumer has not finished (the replay then skips the
            # consumers that did); a frame every consumer finished is simply marked fanned out
            partial = {name: [k for k in ok if k not in complete] for name, ok in finished.items()}
            return len(complete), ({n: k for n, k in partial.items() if k}, [k for k in keys if k in complete])
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
    """Buffers batches and writes them in bulk; safe to call ``submit`` from many coroutines.

    :meth:`run` drains the buffer as a pipeline: while one write is at PostgreSQL, the previous write's
    batches are fanned out and the next write is built; the fan-out bookkeeping of a write rides in the next
    write's transaction (or is written on its own when the buffer is empty)."""

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
        self._finish: store.FinishArgs | None = None  # fan-out bookkeeping not yet written
        self.latency = LatencyHistogram()

    def _drop(self, cause: str, frames: int) -> None:
        if frames:
            self.dropped[cause] = self.dropped.get(cause, 0) + frames

    def submit(self, batches: Sequence[DetectionBatch], producer: str = "sampler") -> None:
        self.buffer.extend(kernel_item(batch, producer) for batch in batches)
        over = len(self.buffer) - self.max_buffer
        if over > 0:
            for _ in range(over):
                self.buffer.popleft()
            self._drop("buffer_full", over)
        self.wakeup.set()

    def _take(self) -> list[store.IngestItem]:
        return [self.buffer.popleft() for _ in range(min(self.max_batch, len(self.buffer)))]

    def _requeue(self, items: list[store.IngestItem], exc: Exception) -> None:
        """A write failed: back to the head of the buffer, or dropped (counted) after ``max_attempts``."""
        self.errors += 1
        self._attempts += 1
        self.last_error = exc.__class__.__name__
        if self._attempts >= self.max_attempts:
            self._attempts = 0
            self._drop("db_error", len(items))
            logger.warning("ingest of %d frames failed %d times (%s): dropped", len(items), self.max_attempts,
                           exc.__class__.__name__)  # fmt: skip
            return
        self.buffer.extendleft(reversed(items))
        over = len(self.buffer) - self.max_buffer
        for _ in range(max(0, over)):
            self.buffer.pop()  # the newest beyond the bound go: the head is retried
        self._drop("buffer_full", max(0, over))

    async def _write(self, items: list[store.IngestItem], prepared: store.PreparedIngest) -> list[DetectionBatch]:
        """One transaction; returns the batches that were new. Raises on a database error (not requeued)."""
        assert self.pool is not None, "ingest without a pool"
        finish, self._finish = self._finish, None  # this write owns the bookkeeping written so far
        try:
            try:
                result = await store.write_ingest(self.pool, prepared, finish)
            except asyncpg.ForeignKeyViolationError:  # a camera was deleted meanwhile: keep the others
                known = await store.existing_cameras(self.pool, [i.batch.camera_id for i in items])
                self._drop("camera_deleted", sum(1 for i in items if i.batch.camera_id not in known))
                items = [i for i in items if i.batch.camera_id in known]
                result = await store.write_ingest(self.pool, store.prepare_ingest(items), finish)
        except BaseException:
            if finish is not None:  # not written: it goes with a later write
                self._finish = finish if self._finish is None else _merge(finish, self._finish)
            raise
        if finish is not None:
            self.fanout.completed += len(finish[1])
        self._attempts = 0
        committed = time.time()
        fresh = [i.batch for i, new in zip(items, result.inserted, strict=True) if new]
        for batch in fresh:
            self.latency.observe(max(0.0, committed - batch.captured_at.timestamp()))
        self.rows += result.rows
        self.frames += len(fresh)
        self.duplicates += len(items) - len(fresh)
        self.flushes += 1
        return fresh

    async def _fan(self, fresh: list[DetectionBatch]) -> None:
        """Fan committed batches out; their bookkeeping waits for the next write. Never raises."""
        try:
            _, finish = await self.fanout.deliver_collect(fresh)
        except Exception as exc:  # committed: the replay fans these out later
            logger.warning("fan-out of %d frames failed (%s); left for replay", len(fresh), exc.__class__.__name__)
            return
        if finish is not None:
            self._finish = finish if self._finish is None else _merge(self._finish, finish)

    async def _write_finish(self) -> None:
        finish, self._finish = self._finish, None
        if finish is None:
            return
        assert self.pool is not None
        try:
            await store.finish_fanout(self.pool, *finish)
            self.fanout.completed += len(finish[1])
        except Exception as exc:  # the frames stay unfanned: the replay delivers them again (at least once)
            logger.warning("fan-out bookkeeping of %d frames failed (%s)", len(finish[1]), exc.__class__.__name__)

    async def flush(self) -> int:
        """Write what is buffered (up to ``max_batch`` frames) and fan it out; returns the frames taken. On a
        database error the frames go back to the head of the buffer (and the error is raised) until they failed
        ``max_attempts`` times; then they are dropped and counted."""
        items = self._take()
        if not items:
            return 0
        try:
            fresh = await self._write(items, store.prepare_ingest(items))
        except Exception as exc:
            self._requeue(items, exc)
            raise
        if fresh:
            await self._fan(fresh)
        await self._write_finish()
        return len(items)

    async def drain(self) -> None:
        """Write the whole buffer out as a pipeline (see the class docstring): up to ``depth`` writes at
        PostgreSQL at once (one per pool connection, at most 2) while the next one is built, fanned out strictly
        in the order they were taken. Raises on a database error, with the frames of every write not yet done
        back at the buffer's head (a later write that committed meanwhile is not written twice)."""
        depth = max(1, min(2, self._pool_size()))
        writes: collections.deque[tuple[list[store.IngestItem], asyncio.Task[list[DetectionBatch]]]] = (
            collections.deque()
        )
        nxt: tuple[list[store.IngestItem], store.PreparedIngest] | None = None
        loop = asyncio.get_running_loop()
        try:
            while self.buffer or writes or nxt is not None:
                while len(writes) < depth and (nxt is not None or self.buffer):
                    if nxt is None:
                        items = self._take()
                        nxt = (items, store.prepare_ingest(items))
                    writes.append((nxt[0], loop.create_task(self._write(*nxt))))
                    nxt = None
                if nxt is None and self.buffer:  # built while the writes are at PostgreSQL
                    items = self._take()
                    nxt = (items, await store.prepare_ingest_async(items))
                fresh = await writes[0][1]
                writes.popleft()
                if fresh:
                    await self._fan(fresh)
        except Exception as exc:
            pending = [items for items, task in writes if not (task.done() and not task.cancelled()
                                                              and task.exception() is None)]  # fmt: skip
            for _, task in writes:
                task.cancel()
            await asyncio.gather(*(t for _, t in writes), return_exceptions=True)
            if nxt is not None:
                self.buffer.extendleft(reversed(nxt[0]))
            for items in reversed(pending[1:]):
                self.buffer.extendleft(reversed(items))
            self._requeue(pending[0] if pending else [], exc)
            raise
        await self._write_finish()

    def _pool_size(self) -> int:
        get = getattr(self.pool, "get_max_size", None)
        return int(get()) if callable(get) else 1

    async def run(self, linger_s: float = 0.01) -> None:
        """Flush loop: wake on submit, linger briefly so concurrent submits share a write. Never dies of an
        exception: a failed write backs off and is retried (bounded, see :meth:`_requeue`)."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await asyncio.sleep(linger_s)
            while self.buffer or self._finish is not None:
                try:
                    await self.drain()
                except Exception:
                    await asyncio.sleep(min(10.0, self.retry_base_s * 2 ** max(0, self._attempts - 1)))

    def stats(self) -> dict[str, Any]:
        return {"rows": self.rows, "frames": self.frames, "duplicates": self.duplicates, "flushes": self.flushes,
                "errors": self.errors, "buffered": len(self.buffer), "latency": self.latency.snapshot(),
                "frames_dropped": dict(self.dropped), "last_error": self.last_error,
                "delivered": dict(self.fanout.delivered), "consumer_failures": dict(self.fanout.failures),
                "redelivered": self.fanout.redelivered, "fanned_out": self.fanout.completed}  # fmt: skip


def _merge(a: store.FinishArgs, b: store.FinishArgs) -> store.FinishArgs:
    partial = {name: [*a[0].get(name, ()), *b[0].get(name, ())] for name in {*a[0], *b[0]}}
    return partial, [*a[1], *b[1]]
