"""The ``ingest`` actor: one writer of detections for the cluster, and the home of detection consumers.

Detectors hand it batches; it writes them in bulk (outbox + COPY, idempotent per (camera, frame_id))
through its own small pool, then fans each committed batch out to the consumers named in
``HELDAR_DETECTION_CONSUMERS`` (at least once each, see ``heldar.perception.ingest``). The API hands it
batches it committed itself (``deliver``), so HTTP-ingested frames reach the consumers at once; every few
seconds it replays frames whose fan-out did not finish; every second it lets consumers expire tracks that
went quiet (``tick``).

It heals itself: the constructor schedules the start-up (pool with retries, consumers, loops), so a Ray
restart after ``SIGKILL`` needs nobody to call it. ``ping`` says whether the loops really run. Settings
are pushed on every fleet reconcile and API start (``configure``), so a restarted ``heldar serve`` with new
settings does not leave the actor on old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import ray

from config import Settings
from heldar.aio import wait_set
from heldar.logging_setup import setup_actor_logging
from heldar.perception.detections import DetectionBatch
from heldar.perception.fleet import SettingsStamp
from heldar.perception.ingest import ConsumerContext, FanOut, Ingestor, load_consumers
from heldar.perception.metrics import LatencyHistogram
from heldar.store.database import close_pool, create_pool

logger = logging.getLogger(__name__)

INGEST_NAME = "ingest"
REPLAY_EVERY_S = 5.0
TICK_EVERY_S = 1.0
READY_WAIT_S = 10.0
MAX_DELIVER = 500  # committed batches fanned out per round


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=128)
class IngestActor:
    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        setup_actor_logging(settings)
        self.stamp = SettingsStamp.of(settings)
        self.settings = Settings(**settings)
        self.database_url = database_url
        self.pool: Any = None
        self.ingestor = Ingestor(None, FanOut(None), max_buffer=self.settings.ai_ingest_max_buffer)
        self.ready = asyncio.Event()
        self.committed: list[DetectionBatch] = []  # batches other processes committed, waiting for fan-out
        self.committed_wakeup = asyncio.Event()
        self.starts = 0
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._startup: asyncio.Task[None] = asyncio.get_event_loop().create_task(self._start())

    # --- life -------------------------------------------------------------------------------------
    async def _start(self) -> None:
        """Open the pool (retrying while PostgreSQL is away), build consumers, start the loops."""
        delay = 0.5
        while self.pool is None:
            try:
                self.pool = await create_pool(
                    self.database_url, max_size=self.settings.ai_ingest_connections, min_size=1
                )
            except Exception as exc:
                logger.warning("ingest: database not reachable (%s); retrying in %.1f s", exc.__class__.__name__,
                               delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        self._build_consumers()
        self.ingestor.pool = self.pool
        self.ingestor.fanout.pool = self.pool
        loop = asyncio.get_running_loop()
        self._loops = {
            "flush": loop.create_task(self.ingestor.run()),
            "replay": loop.create_task(self._replay_loop()),
            "tick": loop.create_task(self._tick_loop()),
            "deliver": loop.create_task(self._deliver_loop()),
        }
        self.starts += 1
        self.ready.set()
        logger.info("ingest started (pid %d) with consumers %s", os.getpid(),
                    [c.name for c in self.ingestor.fanout.consumers])  # fmt: skip

    async def _latest_jpeg(self, camera_id: str) -> bytes | None:
        """The camera's newest sampled frame (sub profile first), for evidence; None without a sampler."""
        from actors.sampler import get_sampler

        for profile in ("sub", "main"):
            handle = get_sampler(self.settings.ray_namespace, camera_id, profile)
            if handle is None:
                continue
            with contextlib.suppress(Exception):
                frame = await asyncio.wait_for(handle.latest_frame.remote(), 2.0)
                if frame:
                    return frame["jpeg"]  # type: ignore[no-any-return]
        return None

    def _build_consumers(self) -> None:
        context = ConsumerContext(self.pool, dict(self.stamp.values), self._latest_jpeg)
        self.ingestor.fanout.consumers = load_consumers(self.settings.detection_consumers, context)

    async def _ready(self) -> bool:
        return await wait_set(self.ready, READY_WAIT_S)

    async def start(self) -> dict[str, Any]:
        """Idempotent: wait until up (the constructor already started everything); answers ``stats``."""
        await self._ready()
        return await self.stats()

    async def configure(self, settings: dict[str, Any]) -> bool:
        """Adopt ``settings`` when they differ from the running ones (consumers rebuilt); True if changed."""
        stamp = SettingsStamp.of(settings)
        if stamp.digest == self.stamp.digest:
            return False
        self.stamp, self.settings = stamp, Settings(**settings)
        self.ingestor.max_buffer = self.settings.ai_ingest_max_buffer
        if await self._ready():
            self._build_consumers()
        logger.info("ingest: settings changed (%s); consumers rebuilt", stamp.digest)
        return True

    async def _replay_loop(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_EVERY_S)
            try:
                await self.ingestor.fanout.replay(older_than_s=REPLAY_EVERY_S)
            except Exception as exc:
                logger.warning("ingest: replay failed: %s", exc.__class__.__name__)

    async def _deliver_loop(self) -> None:
        """Fan out what ``deliver`` queued, everything queued at once (one bookkeeping statement per round)."""
        while True:
            await self.committed_wakeup.wait()
            self.committed_wakeup.clear()
            while self.committed:
                batches, self.committed = self.committed[:MAX_DELIVER], self.committed[MAX_DELIVER:]
                try:
                    await self.ingestor.fanout.deliver(batches)
                except Exception as exc:  # committed: the replay delivers them
                    logger.warning("ingest: fan-out of %d committed batches failed: %s", len(batches),
                                   exc.__class__.__name__)  # fmt: skip

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_EVERY_S)
            await self.ingestor.fanout.tick()

    # --- work -------------------------------------------------------------------------------------
    async def submit(self, batches: Sequence[DetectionBatch], producer: str = "sampler") -> None:
        """Buffer kernel batches (bounded: beyond ``HELDAR_AI_INGEST_MAX_BUFFER`` the oldest are dropped and
        counted); accepted even while the actor is still starting."""
        self.ingestor.submit(batches, producer)

    async def deliver(self, batches: Sequence[DetectionBatch]) -> int:
        """Queue batches another process just committed (the API after an HTTP ingest) for fan-out at once;
        returns how many are queued. Bounded: beyond ``HELDAR_AI_INGEST_MAX_BUFFER`` the replay takes over."""
        if len(self.committed) + len(batches) > self.settings.ai_ingest_max_buffer:
            return 0  # committed: the replay fans them out
        self.committed.extend(batches)
        self.committed_wakeup.set()
        return len(batches)

    async def fan_out_pending(self, older_than_s: float = 0.0) -> int:
        """Fan out committed frames not yet fanned out."""
        if not await self._ready():
            return 0
        return await self.ingestor.fanout.replay(older_than_s=older_than_s)

    # --- health -----------------------------------------------------------------------------------
    async def ping(self) -> dict[str, Any]:
        loops = {name: not task.done() for name, task in self._loops.items()}
        db_ok = False
        if self.pool is not None:
            with contextlib.suppress(Exception):
                db_ok = await asyncio.wait_for(self.pool.fetchval("SELECT true"), 2.0) is True
        running = bool(loops) and all(loops.values())
        starting = not self._startup.done() and not loops
        return {"ok": running, "starting": starting, "role": "ingest", "pid": os.getpid(), "loops": loops,
                "db_ok": db_ok, "starts": self.starts, "settings": self.stamp.digest,
                "buffered": len(self.ingestor.buffer)}  # fmt: skip

    async def stats(self) -> dict[str, Any]:
        out = self.ingestor.stats()
        out["pid"] = os.getpid()
        out["ready"] = self.ready.is_set()
        for consumer in self.ingestor.fanout.consumers:
            extra = getattr(consumer, "stats", None)
            if callable(extra):
                out[f"consumer_{consumer.name}"] = extra()
        return out

    async def reset_latency(self) -> None:
        """Start the frame → row latency histogram afresh (benchmarks exclude their warm-up)."""
        self.ingestor.latency = LatencyHistogram()

    async def shutdown(self) -> None:
        for task in self._loops.values():
            task.cancel()
        self._startup.cancel()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                while self.ingestor.buffer:
                    await self.ingestor.flush()
            await close_pool(self.pool)
            self.pool = None


def ensure_ingest(settings: Settings, database_url: str) -> Any:
    """The named detached ingest actor (created if missing), with ``settings`` pushed to it."""
    values = settings.for_actors()
    handle = IngestActor.options(  # type: ignore[attr-defined]
        name=INGEST_NAME, namespace=settings.ray_namespace, lifetime="detached", get_if_exists=True
    ).remote(values, settings.database_ref(database_url))
    handle.configure.remote(values)  # an existing actor may run on older settings
    return handle


def get_ingest(namespace: str) -> Any | None:
    try:
        return ray.get_actor(INGEST_NAME, namespace=namespace)
    except ValueError:
        return None
