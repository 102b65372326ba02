"""The supervisor actor: keeps the set of camera units in step with the cameras table.

Named ``supervisor``, detached, restarted by Ray if its process dies (``max_restarts=-1``). It
reconciles at start, on every registry change the API reports, and periodically as a safety net.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import ray

from config import Settings
from heldar.store import cameras as camera_store
from heldar.store.database import create_pool
from heldar.supervision import plan_reconcile

logger = logging.getLogger(__name__)

SUPERVISOR_NAME = "supervisor"
RECONCILE_EVERY_S = 10.0


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=64)
class Supervisor:
    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        logging.basicConfig(level=settings.get("log_level", "INFO"))
        self.settings = Settings(**settings)
        self.database_url = database_url
        self.pool: Any = None
        self.desired: dict[str, datetime] = {}
        self.tracked: dict[str, datetime] = {}
        self.started_at = datetime.now(UTC)
        self.reconciles = 0
        self.last_reconcile_error: str | None = None
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, Any]:
        """Open the pool and start the reconcile loop; idempotent."""
        if self.pool is None:
            self.pool = await create_pool(
                self.database_url,
                max_size=self.settings.db_actor_connections,
                min_size=1,
                timeout=self.settings.db_connect_timeout_s,
            )
        if self._loop_task is None:
            await self.reconcile()
            self._loop_task = asyncio.get_running_loop().create_task(self._reconcile_forever())
        return await self.ping()

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            try:
                await self.reconcile()
            except Exception:
                logger.exception("periodic reconcile failed")

    async def reconcile(self, camera_id: str | None = None) -> dict[str, Any]:
        """Bring the running set in line with the table; ``camera_id`` names the camera that changed."""
        async with self._lock:
            try:
                self.desired = await camera_store.camera_ids_to_record(self.pool)
            except Exception as exc:
                self.last_reconcile_error = f"cannot read cameras: {exc.__class__.__name__}"
                raise
            plan = plan_reconcile(self.desired, self.tracked)
            for cid in plan.stop:
                self.tracked.pop(cid, None)
            for cid in plan.start + plan.reload:
                self.tracked[cid] = self.desired[cid]
            self.reconciles += 1
            self.last_reconcile_error = None
            if not plan.empty:
                logger.info(
                    "reconciled (trigger=%s): start=%s stop=%s reload=%s",
                    camera_id,
                    plan.start,
                    plan.stop,
                    plan.reload,
                )
            return {"start": plan.start, "stop": plan.stop, "reload": plan.reload}

    async def desired_cameras(self) -> list[str]:
        return sorted(self.tracked)

    async def ping(self) -> dict[str, Any]:
        return {
            "ok": True,
            "started_at": self.started_at.isoformat(),
            "cameras": len(self.tracked),
            "reconciles": self.reconciles,
            "last_reconcile_error": self.last_reconcile_error,
            "time": time.time(),
        }

    async def shutdown(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
