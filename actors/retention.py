"""The retention sweeper actor ``retention``: one per cluster, a sweep every max(HELDAR_RETENTION_INTERVAL_S, 30) s.

Named and detached with ``max_restarts=-1``: if its process dies Ray starts it again and the constructor
starts the loop again (the way Ray Serve's controller heals itself), so nobody has to call ``start()``.
Each sweep also takes a PostgreSQL advisory lock (see :mod:`heldar.store.retention`), so two clusters on
one database, or a stale actor next to a new one, never sweep at the same time: the loser skips.

The work itself is :class:`heldar.storage.sweeper.RetentionSweeper`; this is wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

import ray

from config import Settings
from heldar.logging_setup import setup_actor_logging
from heldar.storage.retention import sweep_interval_s
from heldar.storage.sweeper import RetentionSweeper, SweepConfig
from heldar.store.database import close_pool, create_pool
from heldar.supervision.budget import RETENTION_CONNECTIONS
from heldar.zones.evidence import evidence_root

logger = logging.getLogger(__name__)

RETENTION_NAME = "retention"
FIRST_SWEEP_AFTER_S = 5.0


def sweep_config(settings: Settings) -> SweepConfig:
    return SweepConfig(
        recordings_root=settings.recordings_root,
        max_recordings_gb=settings.max_recordings_gb,
        min_free_disk_gb=settings.min_free_disk_gb,
        detection_retention_hours=settings.detection_retention_hours,
        event_retention_days=settings.event_retention_days,
        orphan_every_s=settings.retention_orphan_interval_s,
        evidence_root=evidence_root(settings.data_dir),
        clips_root=settings.clips_root,
    )


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=16)
class RetentionActor:
    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        setup_actor_logging(settings)
        self.settings = Settings(**settings)
        self.database_url = database_url
        self.interval_s = sweep_interval_s(self.settings.retention_interval_s)
        self.leader = f"{socket.gethostname()}:{os.getpid()}:{self.settings.ray_namespace}"
        self.started_at = datetime.now(UTC)
        self.pool: Any = None
        self.sweeper: RetentionSweeper | None = None
        self.sweeps = 0
        self.last_error: str | None = None
        self._sweep_lock = asyncio.Lock()
        # Strong reference: a task only referenced by the loop can be garbage-collected mid-flight.
        self._loop_task: asyncio.Task[None] = asyncio.get_event_loop().create_task(self._run())

    async def configure(self, settings: dict[str, Any], database_url: str) -> None:
        """New settings (the supervisor passes its own on every activation); the next sweep uses them."""
        async with self._sweep_lock:
            self.settings = Settings(**settings)
            self.interval_s = sweep_interval_s(self.settings.retention_interval_s)
            if database_url != self.database_url and self.pool is not None:
                await close_pool(self.pool)
                self.pool = None
                self.sweeper = None
            self.database_url = database_url
            if self.sweeper is not None:
                self.sweeper.config = sweep_config(self.settings)

    async def _ensure(self) -> RetentionSweeper:
        if self.sweeper is None:
            self.pool = await create_pool(
                self.database_url, max_size=RETENTION_CONNECTIONS, min_size=0,
                timeout=self.settings.db_connect_timeout_s,
            )  # fmt: skip
            self.sweeper = RetentionSweeper(self.pool, sweep_config(self.settings), self.leader)
        return self.sweeper

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_SWEEP_AFTER_S)
        while True:
            try:
                await self.sweep_now()
            except Exception as exc:
                self.last_error = exc.__class__.__name__
                logger.exception("retention sweep failed")
            await asyncio.sleep(self.interval_s)

    async def sweep_now(self, orphans: bool | None = None) -> dict[str, Any]:
        """Run one sweep now (waits for one in progress); ``orphans=True`` forces the file pass."""
        async with self._sweep_lock:
            sweeper = await self._ensure()
            outcome = await sweeper.sweep(orphans=orphans)
            self.sweeps += 1
            self.last_error = None if outcome.get("ok") or outcome.get("skipped") else ";".join(outcome["errors"])
            return outcome

    async def last_outcome(self) -> dict[str, Any] | None:
        return None if self.sweeper is None else self.sweeper.last_outcome

    async def ping(self) -> dict[str, Any]:
        return {
            "ok": not self._loop_task.done(),
            "pid": os.getpid(),
            "leader": self.leader,
            "interval_s": self.interval_s,
            "sweeps": self.sweeps,
            "started_at": self.started_at.isoformat(),
            "last_error": self.last_error,
        }

    async def shutdown(self) -> None:
        self._loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._loop_task
        if self.pool is not None:
            await close_pool(self.pool)
            self.pool = None
            self.sweeper = None


def ensure_retention(settings: Settings, database_url: str, *, wait: bool | None = None) -> Any:
    """Create the detached ``retention`` actor (or find the running one and give it these settings).

    ``wait`` (default: only when not called from inside an actor, whose event loop must not block) waits
    until it answers.
    """
    values, ref = settings.for_actors(), settings.database_ref(database_url)
    handle = RetentionActor.options(  # type: ignore[attr-defined]
        name=RETENTION_NAME,
        namespace=settings.ray_namespace,
        lifetime="detached",
        get_if_exists=True,
    ).remote(values, ref)
    handle.configure.remote(values, ref)
    if wait is None:
        wait = ray.get_runtime_context().get_actor_id() is None
    if wait:
        ray.get(handle.ping.remote(), timeout=120)
    return handle


def get_retention(namespace: str) -> Any | None:
    try:
        return ray.get_actor(RETENTION_NAME, namespace=namespace)
    except ValueError:
        return None
