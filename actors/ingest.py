"""The ``ingest`` actor: one writer of detections for the cluster, and the home of detection consumers.

Detectors hand it batches (fire and forget); it writes them in bulk (outbox + COPY, idempotent per
(camera, frame_id)) through its own small pool, then fans each committed batch out to the consumers
named in ``HELDAR_DETECTION_CONSUMERS`` (at most once each). Every few seconds it replays frames whose
fan-out did not finish (a crash, or batches the API ingested over HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import ray

from config import Settings
from heldar.logging_setup import setup_actor_logging
from heldar.perception.detections import DetectionBatch
from heldar.perception.ingest import ConsumerContext, FanOut, Ingestor, load_consumers
from heldar.perception.metrics import LatencyHistogram
from heldar.store.database import close_pool, create_pool

logger = logging.getLogger(__name__)

INGEST_NAME = "ingest"
REPLAY_EVERY_S = 5.0


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=128)
class IngestActor:
    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        setup_actor_logging(settings)
        self.settings = Settings(**settings)
        self.raw_settings = settings
        self.database_url = database_url
        self.pool: Any = None
        self.ingestor: Ingestor | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> dict[str, Any]:
        if self.pool is None:
            self.pool = await create_pool(self.database_url, max_size=self.settings.ai_ingest_connections, min_size=1)
            consumers = load_consumers(self.settings.detection_consumers, ConsumerContext(self.pool, self.raw_settings))
            self.ingestor = Ingestor(self.pool, FanOut(self.pool, consumers))
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self.ingestor.run()), loop.create_task(self._replay_loop())]
            logger.info("ingest started with consumers %s", [c.name for c in consumers])
        return await self.stats()

    async def _replay_loop(self) -> None:
        while True:
            await asyncio.sleep(REPLAY_EVERY_S)
            with contextlib.suppress(Exception):
                await self.fan_out_pending(REPLAY_EVERY_S)

    async def submit(self, batches: Sequence[DetectionBatch], producer: str = "sampler") -> None:
        assert self.ingestor is not None, "ingest actor not started"
        self.ingestor.submit(batches, producer)

    async def fan_out_pending(self, older_than_s: float = 0.0) -> int:
        """Fan out committed frames not yet fanned out (the API calls this after an HTTP ingest)."""
        assert self.ingestor is not None
        return await self.ingestor.fanout.replay(older_than_s=older_than_s)

    async def stats(self) -> dict[str, Any]:
        return self.ingestor.stats() if self.ingestor else {}

    async def reset_latency(self) -> None:
        """Start the frame → row latency histogram afresh (benchmarks exclude their warm-up)."""
        if self.ingestor is not None:
            self.ingestor.latency = LatencyHistogram()

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.ingestor is not None:
            with contextlib.suppress(Exception):
                while self.ingestor.buffer:
                    await self.ingestor.flush()
        if self.pool is not None:
            await close_pool(self.pool)
            self.pool = None


def ensure_ingest(settings: Settings, database_url: str) -> Any:
    handle = IngestActor.options(  # type: ignore[attr-defined]
        name=INGEST_NAME, namespace=settings.ray_namespace, lifetime="detached", get_if_exists=True
    ).remote(settings.model_dump(mode="json"), database_url)
    return handle


def get_ingest(namespace: str) -> Any | None:
    try:
        return ray.get_actor(INGEST_NAME, namespace=namespace)
    except ValueError:
        return None
