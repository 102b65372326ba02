"""The parts a recording benchmark runs against: embedded PostgreSQL, a local Ray, the supervisor, one
camera simulator, and a scratch directory. ``Stack`` stops all of them on exit, error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import psutil

from config import Settings, load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.store import cameras as camera_store
from heldar.store.database import EmbeddedPostgres, create_pool
from heldar.store.migrate import migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")
DB_TIMEOUT_S = 30.0
RAY_NUM_CPUS = 4  # as the integration tests; camera actors and the supervisor take num_cpus=0 anyway


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server ``server_url`` points at."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


async def create_database(server_url: str, name: str, *, migrated: bool = True) -> str:
    """A new database ``name`` on the (embedded) server, with heldar's migrations applied unless ``migrated`` is
    False; returns its URL."""
    from heldar.store.database import connect

    conn = await connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = database_url(server_url, name)
    if migrated:
        conn = await connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return url


class Db:
    """A small asyncpg pool driven from synchronous code on a private event loop."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self.pool: Any = self.run(create_pool(url, max_size=2, min_size=1))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DB_TIMEOUT_S) -> T:
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.run(self.pool.fetch(query, *args))]

    def execute(self, query: str, *args: Any) -> str:
        return str(self.run(self.pool.execute(query, *args)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.pool.close(), timeout=10)
        self._loop.close()


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Stack:
    """``with Stack() as stack:`` PostgreSQL + Ray + supervisor + simulator, all stopped on exit."""

    def __init__(
        self,
        *,
        keep_scratch: bool = False,
        sim_kwargs: dict[str, Any] | None = None,
        settings_overrides: dict[str, Any] | None = None,
        start_sim: bool = True,
    ) -> None:
        self.start_sim = start_sim  # False: the caller runs its own simulator (e.g. in a process of its own)
        self.keep_scratch = keep_scratch
        self.sim_kwargs = dict(sim_kwargs or {})  # FakeCamSim arguments (source, settings, replay_minutes)
        self.settings_overrides = dict(settings_overrides or {})
        self.scratch = Path(tempfile.mkdtemp(prefix="heldar-bench-"))
        self.namespace = f"heldar-bench-{uuid.uuid4().hex[:6]}"
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self.pg: EmbeddedPostgres | None = None
        self.url = ""
        self.db: Db | None = None
        self.settings: Settings | None = None
        self.supervisor: Any = None
        self.sim: FakeCamSimThread | None = None
        self.timings: dict[str, float] = {}

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _on_close(self, what: str, fn: Callable[[], None]) -> None:
        self._cleanups.append((what, fn))

    def _start(self) -> None:
        import ray

        from actors.handles import ensure_supervisor

        t = time.monotonic()
        self.pg = EmbeddedPostgres(self.scratch / "pg")
        self.url = self.pg.start()
        self._on_close("postgres", self.pg.stop)
        self.db = Db(self.url)
        self._on_close("db pool", self.db.close)

        async def _migrate() -> None:
            assert self.db is not None
            async with self.db.pool.acquire() as conn:
                await migrate(conn)

        self.db.run(_migrate(), timeout=120)
        self.timings["postgres_start_s"] = round(time.monotonic() - t, 2)

        if self.start_sim:
            t = time.monotonic()
            self.sim = FakeCamSimThread(**self.sim_kwargs).start()
            self._on_close("simulator", self.sim.stop)
            self.timings["simulator_start_s"] = round(time.monotonic() - t, 2)

        t = time.monotonic()
        ray.init(
            address="local",
            namespace=self.namespace,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            num_cpus=RAY_NUM_CPUS,
        )
        self._on_close("ray", ray.shutdown)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # ray.init installed its own; stop in order
        self.timings["ray_start_s"] = round(time.monotonic() - t, 2)

        self.settings = load_settings(
            ray_namespace=self.namespace,
            data_dir=self.scratch / "data",
            ray_dashboard=False,
            anr_enabled=False,
            **self.settings_overrides,
        )
        t = time.monotonic()
        self.supervisor = ensure_supervisor(self.settings, self.url)
        self._on_close("supervisor", self._stop_supervisor)
        self.timings["supervisor_start_s"] = round(time.monotonic() - t, 2)

    def _stop_supervisor(self) -> None:
        import ray

        if self.supervisor is None:
            return
        with contextlib.suppress(Exception):
            ray.get(self.supervisor.shutdown.remote(), timeout=60)
        with contextlib.suppress(Exception):
            ray.kill(self.supervisor, no_restart=True)
        self.supervisor = None

    def close(self) -> None:
        """Stop everything started, newest first; never raises."""
        while self._cleanups:
            what, fn = self._cleanups.pop()
            logger.info("stopping %s", what)
            try:
                fn()
            except BaseException:
                logger.exception("stopping %s failed", what)
        if not self.keep_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    # --- helpers --------------------------------------------------------------------------------
    @property
    def recordings_root(self) -> Path:
        assert self.settings is not None
        return self.settings.recordings_root

    def camera_dir(self, camera_id: str) -> Path:
        return self.recordings_root / camera_id

    def add_cameras(self, cameras: Iterable[tuple[str, str]], segment_seconds: int) -> list[str]:
        """Insert ``(camera_id, url)`` rows (not reconciled yet); returns the ids."""
        assert self.db is not None
        ids = []
        for camera_id, url in cameras:
            body = CameraCreate(id=camera_id, name=camera_id, main_stream_url=url, segment_seconds=segment_seconds)
            camera = Camera.from_create(body, RecordingDefaults())
            self.db.run(camera_store.insert_camera(self.db.pool, camera))
            ids.append(camera_id)
        return ids

    def reconcile(self, camera_id: str | None = None, timeout: float = 120.0) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.supervisor.reconcile.remote(camera_id), timeout=timeout))

    def remove_cameras(self, ids: list[str], timeout: float = 120.0) -> float:
        """Stop recording (the actors flush and exit), then delete the rows; returns seconds taken."""
        assert self.db is not None
        t = time.monotonic()
        pids = [h["actor_pid"] for h in self.health(ids, timeout=10).values() if h]
        self.db.execute("UPDATE cameras SET record_enabled = false, updated_at = now() WHERE id = ANY($1)", ids)
        self.reconcile(timeout=timeout)
        self.db.execute("DELETE FROM cameras WHERE id = ANY($1)", ids)
        _, alive = psutil.wait_procs([p for p in _procs(pids)], timeout=30)
        if alive:
            logger.warning("%d camera actor processes still alive after removal", len(alive))
        for camera_id in ids:
            shutil.rmtree(self.camera_dir(camera_id), ignore_errors=True)
        return time.monotonic() - t

    def health(self, ids: list[str], timeout: float = 10.0) -> dict[str, dict[str, Any] | None]:
        """``health()`` of each camera actor (``None`` where it does not answer)."""
        import ray

        refs: dict[str, Any] = {}
        for camera_id in ids:
            with contextlib.suppress(Exception):
                refs[camera_id] = ray.get_actor(f"camera:{camera_id}", namespace=self.namespace).health.remote()
        out: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        for camera_id, ref in refs.items():
            with contextlib.suppress(Exception):
                out[camera_id] = ray.get(ref, timeout=timeout)
        return out

    def one_health(self, camera_id: str, timeout: float = 2.0) -> dict[str, Any] | None:
        import ray

        try:
            handle = ray.get_actor(f"camera:{camera_id}", namespace=self.namespace)
            return dict(ray.get(handle.health.remote(), timeout=timeout))
        except Exception:
            return None

    def states(self, ids: list[str]) -> dict[str, str]:
        assert self.db is not None
        rows = self.db.fetch("SELECT camera_id, state FROM camera_status WHERE camera_id = ANY($1)", ids)
        return {r["camera_id"]: r["state"] for r in rows}

    def supervisor_pid(self) -> int:
        import ray

        return int(ray.get(self.supervisor.__ray_call__.remote(lambda _self: os.getpid()), timeout=30))

    def postmaster_pid(self) -> int | None:
        pidfile = self.scratch / "pg" / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def _procs(pids: Iterable[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(psutil.Process(pid))
    return out
