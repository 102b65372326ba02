"""The supervisor actor: one CameraActor per recording camera, kept alive and in step with the table.

Named ``supervisor``, detached, restarted by Ray if its own process dies (``max_restarts=-1``); camera
actors are detached too, so a supervisor restart adopts them by name instead of interrupting recording.

* **Reconcile** at start, on every registry change the API reports, and every few seconds.
* **Watch**: an outstanding ``watch()`` call per camera fails the moment its actor dies, so a killed
  actor is restarted within about a second, not at the next health tick.
* **Health**: every ``HELDAR_HEALTH_INTERVAL_S`` each actor must answer ``health()`` within
  ``HELDAR_HEALTH_TIMEOUT_S`` and show a live record loop; a hung one is killed and restarted.
* **Restarts** are rate-limited with backoff per camera, counted by cause, and a crash loop shows as
  state ``error`` with its cause.
* **Writes**: camera actors write through ``write_batch``, so the whole cluster's recorders share this
  actor's small connection pool (``HELDAR_DB_ACTOR_CONNECTIONS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ray

from config import Settings
from heldar.recorder_policy import RestartLimiter
from heldar.recording.backfill import FillResult
from heldar.recording.fill_slots import FillSlots
from heldar.recording.records import RecordingBatch
from heldar.store import cameras as camera_store
from heldar.store import event_recording
from heldar.store import gaps as gap_store
from heldar.store import recording as recording_store
from heldar.store.database import close_pool, create_pool
from heldar.supervision import plan_reconcile

logger = logging.getLogger(__name__)

SUPERVISOR_NAME = "supervisor"
RECONCILE_EVERY_S = 10.0
HUNG_LOOP_AFTER_S = 30.0
PRUNE_EVERY_S = 10.0


@dataclass
class CameraUnit:
    camera_id: str
    version: str
    handle: Any = None
    watch_task: asyncio.Task[None] | None = None
    start_task: asyncio.Task[None] | None = None
    limiter: RestartLimiter = field(default_factory=RestartLimiter)
    restarting: bool = False
    started_at: float = 0.0
    last_health: dict[str, Any] = field(default_factory=dict)


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=256)
class Supervisor:
    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        logging.basicConfig(level=settings.get("log_level", "INFO"))
        self.settings = Settings(**settings)
        self.database_url = database_url
        self.pool: Any = None
        self.units: dict[str, CameraUnit] = {}
        self.desired: dict[str, str] = {}  # camera id → config version of every camera that should record
        self.started_at = datetime.now(UTC)
        self.reconciles = 0
        self.restarts = 0
        self.last_reconcile_error: str | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.fill_slots = FillSlots(self.settings.anr_max_concurrent)
        self._stopping: dict[str, asyncio.Task[None]] = {}  # camera id → its old actor being stopped
        self.perception: Any = None  # PerceptionFleet, created on first perception reconcile

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """Open the pool, reconcile, start the loops; idempotent."""
        if self.pool is None:
            self.pool = await create_pool(
                self.database_url,
                max_size=self.settings.db_actor_connections,
                min_size=1,
                timeout=self.settings.db_connect_timeout_s,
            )
        if not self._tasks:
            with contextlib.suppress(Exception):
                await self.reconcile()
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._every(RECONCILE_EVERY_S, self.reconcile)),
                loop.create_task(self._every(self.settings.health_interval_s, self.check_health)),
                loop.create_task(self._every(PRUNE_EVERY_S, self.prune_event_footage)),
                loop.create_task(self._every(RECONCILE_EVERY_S, self.reconcile_perception)),
            ]
        return await self.ping()

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                logger.exception("supervisor loop %s failed", getattr(job, "__name__", job))

    async def shutdown(self) -> None:
        """Stop every camera actor (their ffmpeg stop with them) and the loops."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        await asyncio.gather(*(self._stop_unit(cid) for cid in list(self.units)), return_exceptions=True)
        if self.perception is not None:
            with contextlib.suppress(Exception):
                await self.perception.shutdown()
        if self.pool is not None:
            await close_pool(self.pool)
            self.pool = None

    # --- reconcile ------------------------------------------------------------------------------
    async def reconcile(self, camera_id: str | None = None) -> dict[str, Any]:
        """Bring running camera actors in line with the table; ``camera_id`` names what changed."""
        async with self._lock:
            try:
                rows = await camera_store.camera_ids_to_record(self.pool)
            except Exception as exc:
                self.last_reconcile_error = f"cannot read cameras: {exc.__class__.__name__}"
                raise
            self.desired = {cid: updated.isoformat() for cid, updated in rows.items()}
            desired = self.desired if self.settings.recorder_enabled else {}
            plan = plan_reconcile(desired, {cid: u.version for cid, u in self.units.items()})
            # Nothing here waits on a camera: stops and starts run as their own tasks, so one slow or
            # unreachable camera never holds up the others (a start first waits for its own old actor).
            loop = asyncio.get_running_loop()
            for cid in plan.stop + plan.reload:
                self._stopping[cid] = loop.create_task(self._retire(cid, self.units.pop(cid, None)))
            for cid in plan.start + plan.reload:
                unit = self.units[cid] = CameraUnit(cid, desired[cid])
                unit.start_task = loop.create_task(self._start_unit(cid))
            self.reconciles += 1
            self.last_reconcile_error = None
            if not plan.empty:
                logger.info("reconciled (trigger=%s): start=%s stop=%s reload=%s",
                            camera_id, plan.start, plan.stop, plan.reload)  # fmt: skip
            self._kick_perception()
            return {"start": plan.start, "stop": plan.stop, "reload": plan.reload}

    async def _start_unit(self, camera_id: str) -> None:
        """Create (or adopt) ``camera:<id>`` and start it; never blocks other cameras."""
        from actors.camera import CameraActor, camera_actor_name
        from heldar.recording.camera_recorder import RecorderOptions

        unit = self.units.get(camera_id)
        if unit is None:
            return
        stopping = self._stopping.get(camera_id)
        if stopping is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(stopping)
        try:
            camera = await camera_store.get_camera(self.pool, camera_id)
        except Exception as exc:
            logger.warning("camera %s: cannot load (%s); next reconcile retries", camera_id, exc.__class__.__name__)
            self.units.pop(camera_id, None)
            return
        anr_interval = self.settings.anr_interval_s if self.settings.anr_enabled and camera.anr_enabled else None
        options = RecorderOptions(
            recordings_root=self.settings.recordings_root,
            rtsp_timeout_s=self.settings.rtsp_timeout_s,
            indexer_interval_s=self.settings.indexer_interval_s,
        )
        name = camera_actor_name(camera_id)
        handle = None
        with contextlib.suppress(ValueError):
            existing = ray.get_actor(name, namespace=self.settings.ray_namespace)
            report = await asyncio.wait_for(existing.health.remote(), self.settings.health_timeout_s)
            if report.get("version") == unit.version and report.get("running"):
                handle = existing  # adopted after a supervisor restart: recording never stopped
            else:
                ray.kill(existing, no_restart=True)
                await asyncio.sleep(0.5)
        if handle is None:
            try:
                handle = CameraActor.options(  # type: ignore[attr-defined]
                    name=name, namespace=self.settings.ray_namespace, lifetime="detached",
                ).remote(camera, options, self.settings.ray_namespace, unit.version, anr_interval)  # fmt: skip
                await handle.start.remote()
            except Exception as exc:
                if self.units.get(camera_id) is unit:
                    await self._restart(unit, "start_failed", f"camera actor did not start ({exc.__class__.__name__})")
                return
        if self.units.get(camera_id) is not unit:  # stopped or replaced meanwhile
            ray.kill(handle, no_restart=True)
            return
        unit.handle = handle
        unit.started_at = time.monotonic()
        unit.watch_task = asyncio.get_running_loop().create_task(self._watch(unit))

    async def _watch(self, unit: CameraUnit) -> None:
        try:
            await unit.handle.watch.remote()
            cause = "exited"
        except asyncio.CancelledError:
            return
        except ray.exceptions.RayActorError:
            cause = "died"
        except Exception as exc:
            logger.warning("camera %s: watch failed: %s", unit.camera_id, exc.__class__.__name__)
            cause = "error"
        if self.units.get(unit.camera_id) is unit and not unit.restarting:
            await self._restart(unit, cause, f"camera actor {cause}")

    async def _stop_unit(self, camera_id: str) -> None:
        await self._stop_handle(self.units.pop(camera_id, None))

    async def _retire(self, camera_id: str, unit: CameraUnit | None) -> None:
        """Stop a unit that reconcile already removed; a new start for the same camera waits for this."""
        try:
            await self._stop_handle(unit)
        finally:
            if self._stopping.get(camera_id) is asyncio.current_task():
                del self._stopping[camera_id]

    async def _stop_handle(self, unit: CameraUnit | None) -> None:
        if unit is None:
            return
        if unit.watch_task is not None:
            unit.watch_task.cancel()
        if unit.handle is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(unit.handle.stop.remote(), 25)
            with contextlib.suppress(Exception):
                ray.kill(unit.handle, no_restart=True)

    async def _restart(self, unit: CameraUnit, cause: str, message: str) -> None:
        unit.restarting = True
        now = time.monotonic()
        delay = unit.limiter.record_failure(now, cause)
        crash_loop = unit.limiter.crash_loop(now)
        self.restarts += 1
        detail = f"{message}; restart #{unit.limiter.restarts_total} in {delay:.1f}s"
        if crash_loop:
            detail = f"crash loop: {message} ({unit.limiter.failures_in_window(now)} restarts recently)"
        logger.warning("camera %s: %s", unit.camera_id, detail)
        with contextlib.suppress(Exception):
            await recording_store.record_restart(
                self.pool, unit.camera_id, cause, crash_loop=crash_loop, message=detail
            )
        if unit.watch_task is not None and unit.watch_task is not asyncio.current_task():
            unit.watch_task.cancel()
        if unit.handle is not None:
            with contextlib.suppress(Exception):
                ray.kill(unit.handle, no_restart=True)
        await asyncio.sleep(delay)
        if self.units.get(unit.camera_id) is not unit:
            return
        unit.handle = None
        unit.restarting = False
        await self._start_unit(unit.camera_id)

    # --- health ---------------------------------------------------------------------------------
    async def check_health(self) -> dict[str, Any]:
        units = [u for u in self.units.values() if u.handle is not None and not u.restarting]
        results = await asyncio.gather(*(self._check_one(u) for u in units), return_exceptions=True)
        return {u.camera_id: r if isinstance(r, str) else "error" for u, r in zip(units, results, strict=True)}

    async def _check_one(self, unit: CameraUnit) -> str:
        try:
            report = await asyncio.wait_for(unit.handle.health.remote(), self.settings.health_timeout_s)
        except TimeoutError:
            await self._restart(unit, "hung", f"camera actor did not answer within {self.settings.health_timeout_s}s")
            return "hung"
        except Exception:
            return "dead"  # the watch task restarts it
        unit.last_health = report
        if report.get("loop_age_s", 0) > HUNG_LOOP_AFTER_S:
            await self._restart(unit, "hung", f"record loop silent for {report['loop_age_s']:.0f}s")
            return "hung"
        if time.monotonic() - unit.started_at > 60:
            unit.limiter.reset_after_healthy(time.monotonic())
        return "ok"

    # --- event mode ---------------------------------------------------------------------------
    async def prune_event_footage(self, now: datetime | None = None) -> int:
        """Delete event-mode footage outside every event window once it is past its pre-roll horizon."""
        deleted = await event_recording.prune_unkept(self.pool, now or datetime.now(UTC))
        for camera_id, file_name in deleted:
            path = self.settings.recordings_root / camera_id / file_name
            try:
                await asyncio.to_thread(path.unlink, True)
            except OSError as exc:
                logger.warning("camera %s: could not remove pruned %s: %s", camera_id, file_name, exc)
        if deleted:
            logger.debug("pruned %s event-mode segments outside event windows", len(deleted))
        return len(deleted)

    # --- writes on behalf of camera actors ------------------------------------------------------
    async def write_batch(self, batch: RecordingBatch) -> dict[str, Any]:
        applied = await recording_store.apply_recording_batch(
            self.pool, batch, gap_threshold_s=self.settings.gap_threshold_s
        )
        return {"inserted": applied.segments_inserted, "updated": applied.segments_updated, "gaps": len(applied.gaps)}

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]:
        return await recording_store.indexed_sizes(self.pool, camera_id, file_names)

    # --- ANR on behalf of camera actors ---------------------------------------------------------
    async def gaps_to_fill(self, camera_id: str) -> list[dict[str, Any]]:
        return await gap_store.gaps_to_fill(
            self.pool, camera_id, max_attempts=self.settings.anr_max_attempts,
            max_age_hours=self.settings.anr_max_gap_hours,
        )  # fmt: skip

    async def acquire_fill_slot(self, camera_id: str, ttl_s: float) -> str | None:
        """A cluster-wide ANR slot (at most ``HELDAR_ANR_MAX_CONCURRENT`` fills at once), or None."""
        return self.fill_slots.try_acquire(camera_id, ttl_s)

    async def release_fill_slot(self, lease_id: str) -> None:
        self.fill_slots.release(lease_id)

    async def record_fill(self, camera_id: str, gap_id: str, started_at: datetime, result: FillResult) -> Any:
        return await gap_store.record_fill_attempt(
            self.pool, camera_id=camera_id, gap_id=gap_id, started_at=started_at, ok=result.ok,
            error=result.error, file_name=result.file_name, seconds_recovered=result.seconds,
            max_attempts=self.settings.anr_max_attempts,
        )  # fmt: skip

    async def fill_now(self, camera_id: str, gap_id: str) -> dict[str, Any]:
        """Run one fill attempt of ``gap_id`` now on the camera's actor; the row after it."""
        gap = await gap_store.get_gap(self.pool, camera_id, gap_id)
        unit = self.units.get(camera_id)
        if unit is None or unit.handle is None:
            raise LookupError(f"camera {camera_id} has no running recorder")
        row = await unit.handle.fill_now.remote(gap)
        if row is None:
            raise TimeoutError("no ANR slot came free; try again later")
        return row  # type: ignore[no-any-return]

    async def anr_status(self) -> dict[str, Any]:
        return {"capacity": self.fill_slots.capacity, "in_use": self.fill_slots.in_use,
                "holders": self.fill_slots.holders(), "peak": self.fill_slots.peak}  # fmt: skip

    # --- perception: sampler reconcile (samplers, detectors and ingest live in actors/sampler.py) ---
    def _kick_perception(self) -> None:
        """A camera or task changed: reconcile samplers soon, without holding up recording."""
        if self.pool is not None:
            asyncio.get_running_loop().create_task(self._reconcile_perception_quietly())

    async def _reconcile_perception_quietly(self) -> None:
        try:
            await self.reconcile_perception()
        except Exception:
            logger.exception("perception reconcile failed")

    async def reconcile_perception(self) -> dict[str, Any]:
        from actors.sampler import PerceptionFleet  # samplers may import OpenCV; camera actors never do

        if self.perception is None:
            self.perception = PerceptionFleet(self.settings, self.database_url)
        result = await self.perception.reconcile(self.pool)
        await self.perception.report_offline(self.pool)
        return result  # type: ignore[no-any-return]

    async def sampler_grants(self) -> list[dict[str, Any]]:
        return [] if self.perception is None else await self.perception.status()

    # --- introspection --------------------------------------------------------------------------
    async def desired_cameras(self) -> list[str]:
        """Cameras that should be recording per the table (recorders run only if HELDAR_RECORDER_ENABLED)."""
        return sorted(self.desired)

    async def running_cameras(self) -> list[str]:
        return sorted(self.units)

    async def camera_health(self, camera_id: str) -> dict[str, Any] | None:
        unit = self.units.get(camera_id)
        if unit is None or unit.handle is None:
            return None
        with contextlib.suppress(Exception):
            return await asyncio.wait_for(unit.handle.health.remote(), self.settings.health_timeout_s)
        return None

    async def ping(self) -> dict[str, Any]:
        return {
            "ok": True,
            "started_at": self.started_at.isoformat(),
            "cameras": len(self.units),
            "reconciles": self.reconciles,
            "restarts": self.restarts,
            "last_reconcile_error": self.last_reconcile_error,
            "time": time.time(),
        }
