"""``recording-writer:<n>``: the data plane for recording — segments, status, events and ANR bookkeeping.

Camera actors hold no database connections; they hand their batches to one of a few writers (chosen by a
stable hash of the camera id, the next one on failure). The supervisor decides what runs but writes none of
this, so a supervisor restart or pause never stops indexing. Writers are detached and restarted by Ray; a
writer needs nothing from anyone after a restart: its pool opens lazily on the first call and reopens after
the database comes back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import ray

from config import Settings
from heldar.logging_setup import setup_actor_logging
from heldar.recording.backfill import FillResult
from heldar.recording.records import RecordingBatch
from heldar.store import gaps as gap_store
from heldar.store import recording as recording_store
from heldar.store import supervision as supervision_store
from heldar.store.database import close_pool, create_pool

logger = logging.getLogger(__name__)

WRITER_PREFIX = "recording-writer"
RETIRE_POOL_AFTER_S = 30.0  # a replaced pool is closed once the calls that hold it have surely finished


def writer_name(index: int) -> str:
    return f"{WRITER_PREFIX}:{index}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=64)
class RecordingWriter:
    def __init__(self, settings: dict[str, Any], database_url: str, pool_size: int) -> None:
        setup_actor_logging(settings)
        self.settings = Settings(**settings)
        self.database_url = database_url
        self.pool_size = pool_size
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self.started_at = time.time()
        self.batches = 0
        self.segments = 0
        self.errors = 0
        self.last_error: str | None = None
        self.fill_slot_peak = 0  # most ANR slots in use at once, as seen by this writer's acquisitions

    async def configure(self, settings: dict[str, Any], database_url: str, pool_size: int) -> None:
        """Settings pushed on every supervisor start; a new URL or pool size reopens the pool."""
        self.settings = Settings(**settings)
        if pool_size != self.pool_size or database_url != self.database_url:
            self.pool_size = pool_size
            self.database_url = database_url
            old, self._pool = self._pool, None  # new calls open a new pool; calls in flight finish on the old one
            if old is not None:
                self._retiring.add(asyncio.get_event_loop().create_task(self._retire_pool(old)))

    async def _retire_pool(self, pool: Any) -> None:
        try:
            await asyncio.sleep(RETIRE_POOL_AFTER_S)
            await close_pool(pool, 5)
        finally:
            self._retiring.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _db(self) -> Any:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await create_pool(
                        self.database_url, max_size=self.pool_size, min_size=0,
                        timeout=self.settings.db_connect_timeout_s,
                    )  # fmt: skip
        return self._pool

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool, 5)

    async def _run(self, job: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        try:
            return await job(await self._db(), *args, **kwargs)
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{job.__name__}: {exc.__class__.__name__}"
            raise

    # --- recording ------------------------------------------------------------------------------
    async def write_batch(self, batch: RecordingBatch) -> dict[str, Any]:
        applied = await self._run(
            recording_store.apply_recording_batch, batch, gap_threshold_s=self.settings.gap_threshold_s
        )
        self.batches += 1
        self.segments += applied.segments_inserted
        return {"inserted": applied.segments_inserted, "updated": applied.segments_updated, "gaps": len(applied.gaps)}

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]:
        return await self._run(recording_store.indexed_sizes, camera_id, file_names)  # type: ignore[no-any-return]

    # --- ANR ------------------------------------------------------------------------------------
    async def gaps_to_fill(self, camera_id: str) -> list[dict[str, Any]]:
        return await self._run(  # type: ignore[no-any-return]
            gap_store.gaps_to_fill, camera_id, max_attempts=self.settings.anr_max_attempts,
            max_age_hours=self.settings.anr_max_gap_hours,
        )  # fmt: skip

    async def acquire_fill_slot(self, camera_id: str, ttl_s: float) -> str | None:
        """A cluster-wide ANR slot (at most ``HELDAR_ANR_MAX_CONCURRENT`` at once), or None; a lease in SQL."""
        lease, in_use = await self._run(
            supervision_store.acquire_fill_slot, camera_id, ttl_s, self.settings.anr_max_concurrent
        )
        self.fill_slot_peak = max(self.fill_slot_peak, in_use)
        return lease  # type: ignore[no-any-return]

    async def release_fill_slot(self, lease_id: str) -> None:
        await self._run(supervision_store.release_fill_slot, lease_id)

    async def record_fill(self, camera_id: str, gap_id: str, started_at: datetime, result: FillResult) -> Any:
        return await self._run(
            gap_store.record_fill_attempt, camera_id=camera_id, gap_id=gap_id, started_at=started_at, ok=result.ok,
            error=result.error, file_name=result.file_name, seconds_recovered=result.seconds,
            max_attempts=self.settings.anr_max_attempts,
        )  # fmt: skip

    # --- introspection --------------------------------------------------------------------------
    async def ping(self) -> dict[str, Any]:
        return {
            "ok": True,
            "pid": os.getpid(),
            "pool_size": self.pool_size,
            "batches": self.batches,
            "segments": self.segments,
            "errors": self.errors,
            "last_error": self.last_error,
            "fill_slot_peak": self.fill_slot_peak,
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    async def shutdown(self) -> None:
        await self._close()


def ensure_writers(settings: Settings, database_url: str, count: int, pool_size: int) -> list[Any]:
    """Create (or find) ``recording-writer:0..count-1`` and push the current settings to each."""
    handles = []
    values, ref = settings.for_actors(), settings.database_ref(database_url)
    for index in range(count):
        handle = RecordingWriter.options(  # type: ignore[attr-defined]
            name=writer_name(index), namespace=settings.ray_namespace, lifetime="detached", get_if_exists=True,
            scheduling_strategy="SPREAD",
        ).remote(values, ref, pool_size)  # fmt: skip
        handle.configure.remote(values, ref, pool_size)
        handles.append(handle)
    return handles
