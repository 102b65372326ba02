"""The supervisor actor: the control plane. It decides which camera actors run and restarts what fails.

Named ``supervisor``, detached, restarted by Ray if its own process dies (``max_restarts=-1``). It needs nobody
to call it after a restart: the constructor schedules everything (Ray Serve's controller is the model) and the
tasks are kept by strong references. Camera actors are detached too and write through the
``recording-writer`` actors, so a supervisor restart adopts them by name and loses no segment.

* **One per database.** The active supervisor holds a PostgreSQL advisory lock on a connection of its own.
  A supervisor that cannot take it (another ``heldar serve`` on the same database) is a *standby*: it runs
  nothing and tries again every ``HELDAR_SUPERVISOR_STANDBY_POLL_S``; when the active one dies its connection
  closes, the lock frees, and the standby takes over (the lost time becomes gaps with cause ``failover``).
* **Reconcile** at start, on every registry change the API reports, and every few seconds: a digest of the
  recorder's inputs decides restarts; other edits (name, retention, ANR, pre/post-roll) are pushed live.
* **Units.** Each camera is a :class:`~heldar.supervision.unit.UnitLifecycle`; this actor only executes its
  transitions. Starts and restarts run as their own tasks, never recursively, and never hold up the health
  checks of other cameras. An outstanding ``watch()`` per camera fails the moment its actor dies.
* **Health**: every ``HELDAR_HEALTH_INTERVAL_S`` each actor must answer ``health()`` within
  ``HELDAR_HEALTH_TIMEOUT_S`` and show a live record loop; ``HELDAR_HEALTH_FAILURES_TO_RESTART`` failures in a row
  replace it. A camera waiting out a reconnect backoff is not hung (its loop keeps its heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ray

from actors.recorder_host import HOST_PREFIX, HostedCamera, RecorderHosts, kill_recorder
from config import Settings
from heldar.aio import wait_set
from heldar.errors import NotFound
from heldar.logging_setup import setup_actor_logging
from heldar.media.segment_names import segment_path
from heldar.models.cameras import Camera
from heldar.store import cameras as camera_store
from heldar.store import event_recording
from heldar.store import recording as recording_store
from heldar.store import supervision as supervision_store
from heldar.store.database import close_pool, connect, create_pool
from heldar.store.events import insert_event
from heldar.supervision import plan_reconcile
from heldar.supervision.budget import split_connection_budget
from heldar.supervision.placement import choose_node, eligible_nodes
from heldar.supervision.unit import UnitLifecycle, UnitState
from heldar.supervision.version import live_version, recorder_version

logger = logging.getLogger(__name__)

SUPERVISOR_NAME = "supervisor"
RECONCILE_EVERY_S = 10.0
HUNG_LOOP_AFTER_S = 30.0
PRUNE_EVERY_S = 10.0
LEADERSHIP_EVERY_S = 2.0
START_TIMEOUT_S = 30.0
# At most this many camera actors are being made at once (each is a new Python process); making the actor
# (Ray's worker start included) has CREATE_TIMEOUT_S, its start() START_TIMEOUT_S. Before, 25 cameras
# reconciled together on two busy cores all hit the 30 s start timeout, were killed and retried together.
START_CONCURRENCY = 8
CREATE_TIMEOUT_S = 120.0
NAME_FREE_TIMEOUT_S = 15.0
# Gap causes for the seconds a camera had no recorder because of an edit.
RELOAD_CAUSE = "reconfigured: the camera's stream settings changed and its recorder was restarted"
RECORDING_OFF_CAUSE = "recording_off: the camera was disabled or not recording"


def node_lost(node_id: str | None) -> bool:
    """Whether the Ray node ``node_id`` is known to the cluster and dead."""
    if not node_id:
        return False
    try:
        nodes = ray.nodes()
    except Exception:
        return False
    return any(n.get("NodeID") == node_id and not n.get("Alive", True) for n in nodes)


@dataclass
class CameraUnit:
    camera_id: str
    version: str
    live_version: str
    lifecycle: UnitLifecycle
    handle: Any = None
    task: asyncio.Task[None] | None = None  # the start / restart in flight
    watch_task: asyncio.Task[None] | None = None
    last_health: dict[str, Any] = field(default_factory=dict)
    not_recording_reported: bool = False
    segment_seconds: float = 60.0
    node_id: str | None = None  # the Ray node its actor was placed on (or reported from)

    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=256)
class Supervisor:
    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        setup_actor_logging(settings)
        self.settings = Settings(**settings)
        self.database_url = database_url
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.pool: Any = None
        self.lock_conn: Any = None  # holds the leader lock while this supervisor is active
        self._lock_conn_guard = asyncio.Lock()
        self._start_slots = asyncio.Semaphore(START_CONCURRENCY)
        self.role = "starting"
        self.db_ok = False
        self.run_id: str | None = None
        self.startup_gap_cause: str | None = None
        self.units: dict[str, CameraUnit] = {}
        self.desired: dict[str, str] = {}  # camera id → recorder version of every camera that should record
        self.started_at = datetime.now(UTC)
        self.reconciles = 0
        self.restarts = 0
        self.last_reconcile_error: str | None = None
        self._reconcile_lock = asyncio.Lock()
        self._stopping: dict[str, asyncio.Task[None]] = {}  # camera id → its old actor being stopped
        self._background: set[asyncio.Task[Any]] = set()
        self.loops: dict[str, asyncio.Task[None]] = {}
        self.perception: Any = None  # PerceptionFleet, created on first perception reconcile
        self.writers = 0
        # HELDAR_CAMERAS_PER_RECORDER_HOST > 1: cameras placed in shared recorder hosts (actors/recorder_host.py)
        self.hosts = RecorderHosts(self.settings.ray_namespace, log_level=lambda: self.settings.log_level)
        self._shutting_down = False
        self._active = asyncio.Event()
        self._decided = asyncio.Event()  # active or standby: start() may return
        # Everything starts here, so a Ray restart of this actor needs no caller.
        self._main = self._spawn(self._become_active(), "become_active")

    # --- task bookkeeping -----------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_event_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("supervisor task %s failed: %r", task.get_name(), task.exception())

    # --- leadership -----------------------------------------------------------------------------
    async def _become_active(self) -> None:
        """Wait for the database and the leader lock (as a standby meanwhile), then start supervising."""
        was_standby = False
        while not self._shutting_down:
            conn = None
            try:
                conn = await connect(self.database_url, timeout=self.settings.db_connect_timeout_s, fast_death=True)
                self.db_ok = True
                if await supervision_store.try_leader_lock(conn):
                    await self._activate(conn, was_standby)
                    return
                if not was_standby:
                    logger.warning("another supervisor holds this database's lock; waiting as a standby")
                    self._kill_orphans()
                was_standby = True
                self.role = "standby"
                self._decided.set()
            except Exception as exc:
                self.db_ok = False
                logger.warning("supervisor: cannot become active yet (%s); retrying", exc.__class__.__name__)
            if conn is not None and conn is not self.lock_conn:
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(self.settings.supervisor_standby_poll_s)

    def _kill_orphans(self) -> None:
        """Camera actors in this namespace that a standby does not supervise (left from before a restart of this
        actor, while another supervisor took the lock) would record the same cameras twice: stop them."""
        try:
            named = ray.util.list_named_actors(all_namespaces=True)
        except Exception:
            return
        for entry in named:
            if entry.get("namespace") == self.settings.ray_namespace and entry.get("name", "").startswith(
                ("camera:", HOST_PREFIX)
            ):
                with contextlib.suppress(Exception):
                    ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]), no_restart=True)
                    logger.warning("standby: stopped %s, which another supervisor now runs", entry["name"])

    async def _activate(self, conn: Any, was_standby: bool) -> None:
        """This supervisor holds the lock on ``conn``: record the run, start the data plane and the loops."""
        if self.pool is None:
            self.pool = await create_pool(
                self.database_url, max_size=1, min_size=0, timeout=self.settings.db_connect_timeout_s
            )
        previous = await supervision_store.previous_run(conn)
        if was_standby:
            self.startup_gap_cause = "failover: the active supervisor was lost; this one took over"
        elif ray.get_runtime_context().was_current_actor_reconstructed:
            # Ray restarted this actor in a running cluster: cameras whose actors survived are adopted (no gap);
            # one found without an actor lost it meanwhile.
            self.startup_gap_cause = "recorder_lost: the supervisor restarted and found no camera actor"
        elif previous is not None and previous.clean:
            self.startup_gap_cause = "heldar_stopped: heldar was not running"
        elif previous is not None:
            self.startup_gap_cause = "heldar_crashed: heldar stopped without shutting down"
        self.run_id = await supervision_store.begin_run(conn, self.instance, took_over=was_standby)
        await asyncio.to_thread(self._mark_recordings_root)
        self.lock_conn = conn
        self.role = "active"
        logger.info("supervisor active (%s)%s", self.instance, " after a failover" if was_standby else "")
        self._ensure_data_plane()
        with contextlib.suppress(Exception):
            await self.reconcile()
        self.loops = {
            "reconcile": self._spawn(self._every(RECONCILE_EVERY_S, self.reconcile), "reconcile"),
            "health": self._spawn(self._every(self.settings.health_interval_s, self.check_health), "health"),
            "prune": self._spawn(self._every(PRUNE_EVERY_S, self.prune_event_footage), "prune"),
            "perception": self._spawn(self._every(RECONCILE_EVERY_S, self.reconcile_perception), "perception"),
            "leadership": self._spawn(self._every(LEADERSHIP_EVERY_S, self._check_leadership), "leadership"),
        }
        self._active.set()
        self._decided.set()

    def _mark_recordings_root(self) -> None:
        """The marker camera actors look for to know their node sees the shared recordings root."""
        from actors.camera import ROOT_MARKER

        root = self.settings.recordings_root
        root.mkdir(parents=True, exist_ok=True)
        (root / ROOT_MARKER).write_text(f"{self.instance}\n{self.run_id}\n", encoding="utf-8")

    def _ensure_data_plane(self) -> None:
        """The recording writers (and the retention sweeper when present), with the current settings."""
        from actors.writer import ensure_writers

        budget = split_connection_budget(
            self.settings.db_actor_connections, self.settings.db_writers, self.settings.ai_ingest_connections
        )
        ensure_writers(self.settings, self.database_url, budget.writers, budget.per_writer)
        self.writers = budget.writers
        from actors.retention import ensure_retention

        try:
            ensure_retention(self.settings, self.database_url)
        except Exception:
            logger.exception("could not start the retention sweeper")

    async def _check_leadership(self) -> None:
        """Still holding the lock? If the connection dropped: take it again, or step down if another has it."""
        async with self._lock_conn_guard:
            try:
                await asyncio.wait_for(self.lock_conn.fetchval("SELECT 1"), 5)
                self.db_ok = True
                if self.run_id is not None:
                    await supervision_store.heartbeat_run(self.lock_conn, self.run_id)
                return
            except Exception:
                pass
            with contextlib.suppress(Exception):
                self.lock_conn.terminate()
            try:
                conn = await connect(self.database_url, timeout=self.settings.db_connect_timeout_s, fast_death=True)
            except Exception:
                # Database unreachable: keep recording to disk (camera actors buffer their rows) and retry.
                self.db_ok = False
                return
            self.db_ok = True
            if await supervision_store.try_leader_lock(conn):
                self.lock_conn = conn
                logger.warning("supervisor: database connection was lost; lock taken again")
                return
            with contextlib.suppress(Exception):
                await conn.close()
        logger.warning("supervisor: another supervisor took this database's lock; stepping down to standby")
        self._spawn(self._step_down(), "step_down")

    async def _step_down(self) -> None:
        self.role = "standby"
        self._active.clear()
        for task in self.loops.values():
            task.cancel()
        self.loops = {}
        await asyncio.gather(*(self._retire(cid, self.units.pop(cid), "standby") for cid in list(self.units)),
                             return_exceptions=True)  # fmt: skip
        self._main = self._spawn(self._become_active(), "become_active")

    async def _every(self, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                logger.exception("supervisor loop %s failed", getattr(job, "__name__", job))

    # --- lifecycle API --------------------------------------------------------------------------
    async def configure(self, settings: dict[str, Any]) -> None:
        """Settings pushed by every ``heldar serve`` start: the next reconcile and every new actor use them."""
        self.settings = Settings(**settings)
        if self.role == "active":
            self._ensure_data_plane()

    async def start(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until this supervisor is active or a standby (it starts by itself); returns ``ping()``."""
        await wait_set(self._decided, timeout_s)
        return await self.ping()

    async def shutdown(self) -> None:
        """A clean stop: every camera actor stops (their ffmpeg with them), then the writers, then the lock."""
        self._shutting_down = True
        for task in self.loops.values():
            task.cancel()
        self.loops = {}
        self._main.cancel()
        await asyncio.gather(*(self._retire(cid, self.units.pop(cid), "heldar_stopped") for cid in list(self.units)),
                             return_exceptions=True)  # fmt: skip
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)
        if self.perception is not None:
            with contextlib.suppress(Exception):
                await self.perception.shutdown()
        await self._stop_writers()
        if self.pool is not None and self.run_id is not None:
            with contextlib.suppress(Exception):
                await supervision_store.end_run(self.pool, self.run_id)
        if self.lock_conn is not None:
            with contextlib.suppress(Exception):
                await self.lock_conn.close()
            self.lock_conn = None
        if self.pool is not None:
            await close_pool(self.pool)
            self.pool = None
        self.role = "stopped"

    async def _stop_writers(self) -> None:
        """The data plane goes last: writers (after the cameras' final flush) and the retention sweeper."""
        from actors.retention import get_retention
        from actors.writer import writer_name

        retention = get_retention(self.settings.ray_namespace)
        if retention is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(retention.shutdown.remote(), 5)
            with contextlib.suppress(Exception):
                ray.kill(retention, no_restart=True)
        for index in range(self.writers):
            with contextlib.suppress(Exception):
                handle = ray.get_actor(writer_name(index), namespace=self.settings.ray_namespace)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(handle.shutdown.remote(), 5)
                ray.kill(handle, no_restart=True)

    # --- reconcile ------------------------------------------------------------------------------
    async def reconcile(self, camera_id: str | None = None) -> dict[str, Any]:
        """Bring camera actors in line with the table; ``camera_id`` names what changed (for the log)."""
        if self.role != "active":
            return {"start": [], "stop": [], "reload": [], "role": self.role}
        async with self._reconcile_lock:
            try:
                ids = list(await camera_store.camera_ids_to_record(self.pool))
                cameras = await camera_store.list_cameras(self.pool, only=ids) if ids else []
            except Exception as exc:
                # Keep whatever runs: a database outage must not stop recording.
                self.last_reconcile_error = f"cannot read cameras: {exc.__class__.__name__}"
                raise
            self.desired = {c.id: recorder_version(c) for c in cameras}
            # With HELDAR_RECORDER_ENABLED off the table still says what should record; nothing runs.
            rows = {c.id: c for c in cameras} if self.settings.recorder_enabled else {}
            running = {cid: self.desired[cid] for cid in rows}
            plan = plan_reconcile(running, {cid: u.version for cid, u in self.units.items()})
            for cid in plan.stop:
                self._begin_retire(cid, "stopped")
            for cid in plan.reload:
                self._begin_retire(cid, "reload")
            for cid in plan.start:
                # The first reconcile after becoming active knows why there was no recorder before (heldar
                # stopped, crashed, failed over); later, a start means recording was off for this camera.
                self._add_unit(rows[cid], self.startup_gap_cause if self.reconciles == 0 else RECORDING_OFF_CAUSE)
            for cid in plan.reload:
                self._add_unit(rows[cid], RELOAD_CAUSE)
            for cid, camera in rows.items():
                if cid not in plan.start and cid not in plan.reload:
                    self._keep_in_step(self.units[cid], camera)
            self.reconciles += 1
            self.last_reconcile_error = None
            if not plan.empty:
                logger.info("reconciled (trigger=%s): start=%s stop=%s reload=%s",
                            camera_id, plan.start, plan.stop, plan.reload)  # fmt: skip
            if camera_id is not None or not plan.empty:
                self._kick_perception()
            return {"start": plan.start, "stop": plan.stop, "reload": plan.reload}

    def _add_unit(self, camera: Camera, gap_cause: str | None) -> None:
        lifecycle = UnitLifecycle(
            f"camera:{camera.id}", health_failures_to_restart=self.settings.health_failures_to_restart
        )
        unit = self.units[camera.id] = CameraUnit(
            camera.id, recorder_version(camera), live_version(camera), lifecycle,
            segment_seconds=camera.segment_seconds,
        )  # fmt: skip
        unit.task = self._spawn(self._start_unit(unit, "requested", gap_cause), f"start:{camera.id}")

    def _keep_in_step(self, unit: CameraUnit, camera: Camera) -> None:
        """Live edits reach the running actor; a unit that should run but has nothing in flight is started."""
        unit.segment_seconds = camera.segment_seconds
        if unit.busy():
            return
        state = unit.lifecycle.state
        if state is UnitState.RUNNING and unit.handle is not None:
            if unit.live_version != live_version(camera):
                unit.live_version = live_version(camera)
                unit.task = self._spawn(self._push_live(unit, camera), f"update:{camera.id}")
            return
        # Nothing in flight would ever bring this camera back: the invariant is that every desired camera is
        # running or has a start on the way, so act on it now.
        logger.warning("camera %s: %s with nothing in flight; starting it", unit.camera_id, state)
        if state in (UnitState.RUNNING, UnitState.STARTING):
            self._fail(unit, "lost", "no camera actor and no start in flight", unit.lifecycle.generation)
        else:
            unit.task = self._spawn(self._start_unit(unit, "reconcile", "recorder_lost"), f"start:{unit.camera_id}")

    async def _push_live(self, unit: CameraUnit, camera: Camera) -> None:
        try:
            await asyncio.wait_for(
                unit.handle.update_camera.remote(camera, unit.live_version, self._anr_interval(camera)),
                self.settings.health_timeout_s,
            )
            logger.info("camera %s: settings applied live", unit.camera_id)
        except Exception as exc:
            unit.live_version = ""  # try again at the next reconcile
            logger.warning("camera %s: live update failed (%s)", unit.camera_id, exc.__class__.__name__)

    def _anr_interval(self, camera: Camera) -> float | None:
        return self.settings.anr_interval_s if self.settings.anr_enabled and camera.anr_enabled else None

    # --- starting, watching, restarting ---------------------------------------------------------
    async def _start_unit(self, unit: CameraUnit, cause: str, gap_cause: str | None) -> None:
        """One start attempt of ``unit`` (adopting a running actor of the same version). Never recursive: a
        failure schedules the next attempt through the lifecycle's backoff."""
        lifecycle = unit.lifecycle
        if lifecycle.state not in (UnitState.PENDING, UnitState.BACKING_OFF, UnitState.CRASH_LOOP, UnitState.FAILED):
            return
        generation = lifecycle.begin_start(cause)
        stopping = self._stopping.get(unit.camera_id)
        if stopping is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(stopping)
        try:
            handle = await self._create_or_adopt(unit, gap_cause)
        except NotFound:
            lifecycle.give_up("not_found", "camera is no longer in the registry")
            return
        except Exception as exc:
            self._fail(unit, "start_failed", f"camera actor did not start ({exc.__class__.__name__})", generation)
            return
        if self.units.get(unit.camera_id) is not unit or lifecycle.generation != generation:
            with contextlib.suppress(Exception):
                kill_recorder(handle)  # stopped or replaced meanwhile
            return
        unit.handle = handle
        lifecycle.started(generation)
        unit.watch_task = self._spawn(self._watch(unit, handle, generation), f"watch:{unit.camera_id}")

    async def _create_or_adopt(self, unit: CameraUnit, gap_cause: str | None) -> Any:
        from actors.camera import CameraActor, RecorderStart, camera_actor_name
        from heldar.recording.camera_recorder import RecorderOptions

        camera = await camera_store.get_camera(self.pool, unit.camera_id)
        name = camera_actor_name(unit.camera_id)
        namespace = self.settings.ray_namespace
        existing = await self.hosts.find(unit.camera_id)  # its camera actor, or its recorder in a host
        if existing is not None:
            report = None
            with contextlib.suppress(Exception):
                report = await asyncio.wait_for(existing.health.remote(), self.settings.health_timeout_s)
            if report is not None and report.get("version") == unit.version and report.get("running"):
                if report.get("live_version") != unit.live_version:
                    await existing.update_camera.remote(camera, unit.live_version, self._anr_interval(camera))
                logger.info("camera %s: adopted its running actor", unit.camera_id)
                return existing  # recording never stopped
            with contextlib.suppress(Exception):
                kill_recorder(existing)
            if not isinstance(existing, HostedCamera):
                await self._wait_name_free(name)
        gap_cause = await self._node_lost_cause(unit.camera_id) or gap_cause
        options = RecorderOptions(
            recordings_root=self.settings.recordings_root,
            rtsp_timeout_s=self.settings.rtsp_timeout_s,
            indexer_interval_s=self.settings.indexer_interval_s,
            max_pending=self.settings.recorder_max_pending,
            live_root=self.settings.live_root if self.settings.live_view_enabled else None,
        )
        start = RecorderStart(
            camera, options, unit.version, self._anr_interval(camera), writers=max(1, self.writers),
            live_version=unit.live_version, startup_gap_cause=gap_cause,
        )  # fmt: skip
        async with self._start_slots:
            if self.settings.cameras_per_recorder_host > 1:
                return await self.hosts.create(
                    self.settings.cameras_per_recorder_host,
                    start,
                    scheduling_strategy=self._placement(unit),
                    timeout_s=CREATE_TIMEOUT_S + START_TIMEOUT_S,
                )
            handle = CameraActor.options(  # type: ignore[attr-defined]
                name=name, namespace=namespace, lifetime="detached", scheduling_strategy=self._placement(unit),
            ).remote(start, namespace, self.settings.log_level)  # fmt: skip
            try:
                await asyncio.wait_for(handle.__ray_ready__.remote(), CREATE_TIMEOUT_S)
                await asyncio.wait_for(handle.start.remote(), START_TIMEOUT_S)
            except BaseException:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
                raise
        return handle

    async def _node_lost_cause(self, camera_id: str) -> str | None:
        """``node_lost: …`` when the node this camera last recorded on is dead (whoever noticed the loss)."""
        try:
            status = await recording_store.get_status(self.pool, camera_id)
            node = str((status or {}).get("recorder_node") or "")
            prefix = node.rsplit("/", 1)[-1] if "/" in node else ""
            dead = prefix and any(n["NodeID"].startswith(prefix) and not n["Alive"] for n in ray.nodes())
        except Exception:
            return None
        return f"node_lost: the Ray node {prefix} it recorded on was lost" if dead else None

    def _placement(self, unit: CameraUnit) -> Any:
        """Pin the new actor to the live node that runs the fewest cameras; fall back to SPREAD when the node
        list is unavailable. The pin is hard: Ray 2.60 moved about half of the soft-pinned zero-CPU actors to
        another live node. If the node dies before the actor is made, the start fails and is retried elsewhere."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        try:
            eligible = eligible_nodes(ray.nodes())
        except Exception:
            return "SPREAD"
        # A start in flight counts where it was placed: a reconcile starts many cameras at once, and counting
        # only started actors sent every one of them to the same node.
        placed = [u.node_id for u in self.units.values() if u is not unit and (u.handle is not None or u.busy())]
        node = choose_node(eligible, placed)
        if node is None:
            return "SPREAD"
        unit.node_id = node
        return NodeAffinitySchedulingStrategy(node_id=node, soft=False)

    async def _wait_name_free(self, name: str) -> None:
        """After ``ray.kill`` the name stays taken until the GCS has seen the death; wait for that."""
        deadline = time.monotonic() + NAME_FREE_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name, namespace=self.settings.ray_namespace)
            except ValueError:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"actor name {name} still taken after {NAME_FREE_TIMEOUT_S:.0f}s")

    async def _watch(self, unit: CameraUnit, handle: Any, generation: int) -> None:
        try:
            await handle.watch.remote()
            cause, message = "exited", "recorder ended by itself"
        except asyncio.CancelledError:
            return
        except ray.exceptions.RayActorError as exc:
            cause, message = "died", "camera actor died"
            node_id = unit.last_health.get("node_id") or unit.node_id
            if node_lost(node_id) or "its node has died" in str(exc):
                cause, message = "node_lost", f"the Ray node {str(node_id)[:12]} it ran on was lost"
        except Exception as exc:
            cause, message = "error", f"watch failed ({exc.__class__.__name__})"
        if self.units.get(unit.camera_id) is unit:
            self._fail(unit, cause, message, generation)

    def _fail(self, unit: CameraUnit, cause: str, message: str, generation: int) -> None:
        """Report a failure to the lifecycle; when it counts (not stale, not a duplicate) schedule a restart."""
        delay = unit.lifecycle.failed(cause, message, generation)
        if delay is None:
            return
        self.restarts += 1
        logger.warning("camera %s: %s", unit.camera_id, unit.lifecycle.message)
        unit.task = self._spawn(self._restart_later(unit, delay, cause, message), f"restart:{unit.camera_id}")

    async def _restart_later(self, unit: CameraUnit, delay: float, cause: str, message: str) -> None:
        crash_loop = unit.lifecycle.state is UnitState.CRASH_LOOP
        with contextlib.suppress(Exception):
            await recording_store.record_restart(
                self.pool, unit.camera_id, cause, crash_loop=crash_loop, message=unit.lifecycle.message
            )
        if unit.watch_task is not None:
            unit.watch_task.cancel()
        old, unit.handle = unit.handle, None
        if old is not None:
            with contextlib.suppress(Exception):
                kill_recorder(old)
        await asyncio.sleep(delay)
        if self.units.get(unit.camera_id) is not unit:
            return
        gap_cause = f"node_lost: {message}" if cause == "node_lost" else f"recorder_restarted: {message}"
        await self._start_unit(unit, f"restart after {cause}", gap_cause)

    # --- stopping -------------------------------------------------------------------------------
    def _begin_retire(self, camera_id: str, reason: str) -> None:
        unit = self.units.pop(camera_id, None)
        if unit is not None:
            self._stopping[camera_id] = self._spawn(self._retire(camera_id, unit, reason), f"retire:{camera_id}")

    async def _retire(self, camera_id: str, unit: CameraUnit, reason: str) -> None:
        """Stop a unit already removed from ``units``; a new start for the same camera waits for this."""
        try:
            unit.lifecycle.stop(reason, f"stopping ({reason})")
            if unit.task is not None and unit.task is not asyncio.current_task():
                unit.task.cancel()
            if unit.watch_task is not None:
                unit.watch_task.cancel()
            handle = unit.handle
            if handle is None:
                with contextlib.suppress(Exception):
                    handle = await self.hosts.find(camera_id)
            if handle is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(handle.stop.remote(reason), 25)
                with contextlib.suppress(Exception):
                    kill_recorder(handle)
            unit.lifecycle.stopped()
        finally:
            if self._stopping.get(camera_id) is asyncio.current_task():
                del self._stopping[camera_id]

    async def retire_camera(self, camera_id: str, timeout_s: float = 30.0) -> bool:
        """Stop ``camera_id``'s actor now and wait until it is gone (before its footage is purged)."""
        from actors.camera import camera_actor_name

        async with self._reconcile_lock:
            self.desired.pop(camera_id, None)
            self._begin_retire(camera_id, "stopped")
        stopping = self._stopping.get(camera_id)
        if stopping is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(stopping), timeout_s)
        name = camera_actor_name(camera_id)
        try:
            await self._wait_name_free(name)
        except TimeoutError:
            return False
        return True

    # --- health ---------------------------------------------------------------------------------
    async def check_health(self) -> dict[str, str]:
        units = [u for u in self.units.values() if u.handle is not None and u.lifecycle.state is UnitState.RUNNING]
        for unit in self.units.values():
            if unit not in units:
                await self._watch_not_running(unit)
        results = await asyncio.gather(*(self._check_one(u) for u in units), return_exceptions=True)
        return {u.camera_id: r if isinstance(r, str) else "error" for u, r in zip(units, results, strict=True)}

    async def _check_one(self, unit: CameraUnit) -> str:
        generation = unit.lifecycle.generation
        try:
            report = await asyncio.wait_for(unit.handle.health.remote(), self.settings.health_timeout_s)
        except TimeoutError:
            return self._health_failed(unit, generation, f"did not answer within {self.settings.health_timeout_s}s")
        except Exception:
            return "dead"  # the watch task restarts it
        unit.last_health = report
        unit.node_id = report.get("node_id") or unit.node_id
        loop_age = float(report.get("loop_age_s") or 0.0)
        if loop_age > HUNG_LOOP_AFTER_S:
            return self._health_failed(unit, generation, f"record loop silent for {loop_age:.0f}s")
        unit.lifecycle.health_ok()
        await self._watch_recording(unit, report)
        return "ok"

    def _health_failed(self, unit: CameraUnit, generation: int, message: str) -> str:
        if generation != unit.lifecycle.generation:
            return "stale"
        if unit.lifecycle.health_failed():
            self._fail(unit, "hung", f"camera actor {message}", generation)
            return "hung"
        return "slow"

    async def _watch_not_running(self, unit: CameraUnit) -> None:
        """A desired camera without a running actor (starts failing, crash loop) for too long gets one event."""
        since = unit.lifecycle.history[-1].at if unit.lifecycle.history else None
        if unit.not_recording_reported or since is None:
            return
        silent = (datetime.now(UTC) - since).total_seconds()
        if silent > unit.segment_seconds + self.settings.not_recording_grace_s:
            payload = {"seconds": round(silent, 1), "state": unit.lifecycle.state.value,
                       "cause": unit.lifecycle.cause, "message": unit.lifecycle.message}  # fmt: skip
            await self._report_not_recording(unit, payload)

    async def _report_not_recording(self, unit: CameraUnit, payload: dict[str, Any]) -> None:
        unit.not_recording_reported = True
        logger.warning("camera %s: not recording for %ss (%s)", unit.camera_id, payload["seconds"], payload["cause"])
        with contextlib.suppress(Exception):
            await insert_event(self.pool, "camera_not_recording", camera_id=unit.camera_id, severity="warning",
                               payload=payload)  # fmt: skip

    async def _watch_recording(self, unit: CameraUnit, report: dict[str, Any]) -> None:
        """A desired camera that has not recorded for its segment length plus a grace gets one event."""
        if report.get("state") == "recording":
            unit.not_recording_reported = False
            return
        since = report.get("since_healthy_s")
        silent = float(since if since is not None else report.get("uptime_s") or 0.0)
        if unit.not_recording_reported or silent <= unit.segment_seconds + self.settings.not_recording_grace_s:
            return
        payload = {"seconds": round(silent, 1), "state": report.get("state"), "cause": report.get("last_cause"),
                   "message": report.get("last_error") or "no video received yet"}  # fmt: skip
        await self._report_not_recording(unit, payload)

    # --- event mode ---------------------------------------------------------------------------
    async def prune_event_footage(self, now: datetime | None = None) -> int:
        """Delete event-mode footage outside every event window once it is past its pre-roll horizon."""
        deleted = await event_recording.prune_unkept(self.pool, now or datetime.now(UTC))
        for camera_id, file_name in deleted:
            path = segment_path(self.settings.recordings_root / camera_id, file_name)  # day folder or flat
            try:
                await asyncio.to_thread(path.unlink, True)
            except OSError as exc:
                logger.warning("camera %s: could not remove pruned %s: %s", camera_id, file_name, exc)
        if deleted:
            logger.debug("pruned %s event-mode segments outside event windows", len(deleted))
        return len(deleted)

    # --- ANR ------------------------------------------------------------------------------------
    async def fill_now(self, camera_id: str, gap_id: str) -> dict[str, Any]:
        """Run one fill attempt of ``gap_id`` now on the camera's actor; the row after it."""
        from heldar.store import gaps as gap_store

        gap = await gap_store.get_gap(self.pool, camera_id, gap_id)
        unit = self.units.get(camera_id)
        if unit is None or unit.handle is None:
            raise LookupError(f"camera {camera_id} has no running recorder")
        row = await unit.handle.fill_now.remote(gap)
        if row is None:
            raise TimeoutError("no ANR slot came free; try again later")
        return row  # type: ignore[no-any-return]

    async def anr_status(self) -> dict[str, Any]:
        from actors.writer import writer_name

        status = await supervision_store.fill_slot_status(self.pool)
        peaks = []
        for index in range(self.writers):
            with contextlib.suppress(Exception):
                handle = ray.get_actor(writer_name(index), namespace=self.settings.ray_namespace)
                peaks.append((await asyncio.wait_for(handle.ping.remote(), 5))["fill_slot_peak"])
        return {"capacity": self.settings.anr_max_concurrent, "peak": max(peaks, default=0), **status}

    # --- perception: sampler reconcile (samplers, detectors and ingest live in actors/sampler.py) ---
    def _kick_perception(self) -> None:
        """A camera or task changed: reconcile samplers soon, without holding up recording."""
        if self.pool is not None and "perception_kick" not in {t.get_name() for t in self._background}:
            self._spawn(self._reconcile_perception_quietly(), "perception_kick")

    async def _reconcile_perception_quietly(self) -> None:
        try:
            await self.reconcile_perception()
        except Exception:
            logger.exception("perception reconcile failed")

    async def reconcile_perception(self) -> dict[str, Any]:
        from actors.sampler import PerceptionFleet  # samplers may import OpenCV; camera actors never do

        if self.role != "active":
            return {}
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

    async def units_status(self) -> list[dict[str, Any]]:
        """Every camera unit's lifecycle: state, cause, message, restarts and recent transitions."""
        return [u.lifecycle.snapshot() for u in self.units.values()]

    async def camera_health(self, camera_id: str) -> dict[str, Any] | None:
        unit = self.units.get(camera_id)
        if unit is None or unit.handle is None:
            return None
        with contextlib.suppress(Exception):
            return await asyncio.wait_for(unit.handle.health.remote(), self.settings.health_timeout_s)
        return None

    async def ping(self) -> dict[str, Any]:
        loops = {name: not task.done() for name, task in self.loops.items()}
        active = self.role == "active"
        return {
            "ok": (active and bool(loops) and all(loops.values()) and self.db_ok) or self.role == "standby",
            "role": self.role,
            "loops": loops,
            "db_ok": self.db_ok,
            "instance": self.instance,
            "started_at": self.started_at.isoformat(),
            "cameras": len(self.units),
            "reconciles": self.reconciles,
            "restarts": self.restarts,
            "last_reconcile_error": self.last_reconcile_error,
            "time": time.time(),
        }
