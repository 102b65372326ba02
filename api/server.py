"""``heldar serve``: the all-in-one runtime (embedded database, local Ray, supervisor, API); ``heldar api``:
one stateless API replica of a running cluster.

With ``HELDAR_DATABASE_URL`` and ``HELDAR_RAY_ADDRESS`` set it only joins them, and stopping it leaves
the cluster (and recording) running. SIGINT/SIGTERM stop whatever this process started: open event
streams end at once, other requests get ``HELDAR_SHUTDOWN_TIMEOUT_S``, then the supervisor, Ray and the
embedded PostgreSQL stop.

Before anything starts, ``preflight`` takes the embedded data directory's lock (a second ``heldar serve``
on it refuses with one line), checks that the API port is free and that a Ray cluster to join answers.

``heldar api`` (``mode="api"``) needs both ``HELDAR_RAY_ADDRESS`` and ``HELDAR_DATABASE_URL``: it joins the
cluster, makes sure a supervisor exists and pushes its settings to it, and serves. It never starts or stops
Ray, the database or the supervisor, so any number of replicas may run, and killing one (even with SIGKILL)
interrupts neither recording nor the other replicas' clients.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import uvicorn

from config import Settings
from heldar.cli import StartupError, check_port_free, check_ray_address, progress
from heldar.store import readiness as readiness_store
from heldar.store.database import DataDirLock, EmbeddedPostgres, prepare_database

logger = logging.getLogger(__name__)

CAMERA_PROGRESS_S = 120.0  # how long start-up reports cameras coming up


@dataclass
class Preflight:
    """What ``preflight`` holds for the run: the data directory's lock (embedded database only)."""

    lock: DataDirLock | None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def preflight_api(settings: Settings) -> Preflight:
    """``heldar api``'s checks: it joins an existing cluster and database, so both must be named and answer."""
    examples = {"HELDAR_RAY_ADDRESS": "10.0.0.5:6379", "HELDAR_DATABASE_URL": "postgresql://heldar@db/heldar"}
    given = {"HELDAR_RAY_ADDRESS": settings.ray_address, "HELDAR_DATABASE_URL": settings.database_url}
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise StartupError(
            f"heldar api joins a running cluster and needs {' and '.join(missing)} (e.g. "
            + ", ".join(f"{name}={examples[name]}" for name in missing)
            + "); for everything in one process use heldar serve"
        )
    check_port_free(settings.api_host, settings.api_port)
    check_ray_address(settings.ray_address)
    return Preflight(None)


def preflight(settings: Settings) -> Preflight:
    """Checks that start nothing: lock the embedded data directory, make sure the port is free and the Ray
    cluster to join answers. Raises ``DataDirInUse`` or ``StartupError`` with a one-line message saying the fix.
    """
    lock = DataDirLock(settings.data_dir).acquire() if settings.database_url is None else None
    try:
        check_port_free(settings.api_host, settings.api_port)
        check_ray_address(settings.ray_address)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return Preflight(lock)


class _Server(uvicorn.Server):
    """uvicorn that tells the app it is stopping before it waits for open connections to finish."""

    def __init__(self, config: uvicorn.Config, on_stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stopping = on_stopping

    async def shutdown(self, sockets: Any = None) -> None:
        try:
            self._on_stopping()
        except Exception as exc:
            logger.warning("stopping hooks failed: %s", exc.__class__.__name__)
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings, app: Any) -> uvicorn.Config:
    """uvicorn for ``app``; its loggers (and the access log with ``HELDAR_ACCESS_LOG``) go through heldar's one
    logging set-up, in ``HELDAR_LOG_FORMAT``."""
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        log_level=None,
        access_log=settings.access_log,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
    )


def _print_banner(settings: Settings, server: uvicorn.Server, dashboard_url: str | None) -> str:
    host = settings.api_host if settings.api_host not in ("0.0.0.0", "::") else "127.0.0.1"
    sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
    port = sockets[0].getsockname()[1] if sockets else settings.api_port
    base = f"http://{host}:{port}"
    print("heldar ready" + ("  (AUTH IS OFF: demo use only)" if not settings.auth_enabled else ""), flush=True)
    print(f"  API        {base}/api/v1/cameras", flush=True)
    print(f"  API docs   {base}/docs", flush=True)
    print(f"  health     {base}/readyz    metrics {base}/metrics", flush=True)
    print(f"  Ray        {dashboard_url or 'dashboard not started'}", flush=True)
    return base


async def _report_cameras(state: Any, base: str) -> None:
    """Progress while the cameras come up: a line whenever the count of recording cameras changes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CAMERA_PROGRESS_S
    last = None
    while loop.time() < deadline:
        if state.pool is not None:
            with suppress(Exception):
                counts = await readiness_store.recorder_counts(state.pool)
                if counts.expected == 0:
                    progress(f"no cameras to record yet: register one with POST {base}/api/v1/cameras")
                    return
                if (counts.recording, counts.expected) != last:
                    last = (counts.recording, counts.expected)
                    progress(f"cameras recording: {counts.recording} of {counts.expected}")
                if counts.recording >= counts.expected:
                    return
        await asyncio.sleep(2.0)
    if last is not None:
        progress(f"{last[0]} of {last[1]} cameras recording; see {base}/api/v1/health/cameras for why")


def _connect_ray(settings: Settings) -> Any:
    from actors.cluster import connect_ray

    where = f"joining the Ray cluster at {settings.ray_address}" if settings.ray_address else "starting local Ray"
    progress(f"{where} ...")
    try:
        return connect_ray(settings)
    except ConnectionError as exc:
        raise StartupError(
            f"cannot join the Ray cluster at {settings.ray_address or 'auto'} ({_first_line(exc)}); "
            "check HELDAR_RAY_ADDRESS and that `ray start --head` runs there"
        ) from None
    except RuntimeError as exc:
        if "version" not in str(exc).lower():
            raise
        import ray

        raise StartupError(
            f"the Ray cluster at {settings.ray_address} runs another Ray or Python version than this process "
            f"(ray {ray.__version__}): {_first_line(exc)}; install the same versions on every node"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:200]


def run(
    settings: Settings,
    *,
    held: Preflight | None = None,
    on_ready: Callable[[str, Any], None] | None = None,
    banner_extra: Callable[[str], list[str]] | None = None,
    mode: str = "serve",
) -> int:
    """Run until SIGINT/SIGTERM; return the exit status. ``held`` is ``preflight``'s result (taken if None).

    ``mode="api"`` is ``heldar api``: join only (a process that would own Ray or the database is refused)."""
    import ray

    from actors.handles import ensure_supervisor
    from api.app import begin_stopping, create_app
    from api.auth_wiring import bootstrap_admin
    from api.supervisor_link import SupervisorLink

    joining = mode == "api"
    held = held or (preflight_api(settings) if joining else preflight(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.recordings_root.mkdir(parents=True, exist_ok=True)
    stop_requested = False

    def _early_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        raise KeyboardInterrupt

    def _note_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {s: signal.signal(s, _early_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    embedded: EmbeddedPostgres | None = None
    ray_conn = None
    supervisor = None
    started = False
    try:
        if settings.database_url is None:
            progress(f"starting the embedded PostgreSQL in {settings.data_dir / 'pg'} ...")
        database_url, embedded = asyncio.run(
            prepare_database(settings.database_url, settings.data_dir, connect_timeout_s=settings.db_connect_timeout_s)
        )
        started = True
        asyncio.run(bootstrap_admin(settings, database_url))
        ray_conn = _connect_ray(settings)
        if joining and ray_conn.owns_cluster:  # cannot happen with HELDAR_RAY_ADDRESS set; never own one here
            raise StartupError("heldar api started a Ray of its own; set HELDAR_RAY_ADDRESS to the cluster's")
        progress(
            "finding the cluster's supervisor (started if it has none) and giving it these settings ..."
            if joining
            else "starting the supervisor (it loads every camera before it answers) ..."
        )
        supervisor = ensure_supervisor(settings, database_url)
        with suppress(Exception):
            cameras = ray.get(supervisor.ping.remote(), timeout=10).get("cameras")
            progress(f"supervisor running, {cameras} camera(s) to supervise")
        if on_ready is not None:
            on_ready(database_url, supervisor)
        # uvicorn captures SIGINT/SIGTERM while serving and re-raises them once it has stopped; this
        # handler makes that re-raise a no-op so the cleanup below always runs.
        for sig in previous:
            signal.signal(sig, _note_stop)
        app = create_app(settings, database_url, supervisor=SupervisorLink(settings.ray_namespace))
        config = uvicorn_config(settings, app)
        server = _Server(config, on_stopping=lambda: begin_stopping(app))

        async def _serve() -> None:
            serving = asyncio.get_running_loop().create_task(server.serve())
            while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn offers no event
                await asyncio.sleep(0.05)
            reporter = None
            if server.started:
                base = _print_banner(settings, server, ray_conn.dashboard_url)
                for line in banner_extra(base) if banner_extra else []:
                    print(line, flush=True)
                reporter = asyncio.get_running_loop().create_task(_report_cameras(app.state.heldar, base))
            try:
                await serving
            finally:
                if reporter is not None:
                    reporter.cancel()
                    with suppress(asyncio.CancelledError, Exception):
                        await reporter

        asyncio.run(_serve())
        return 0 if server.started else 1
    except KeyboardInterrupt:
        return 0 if stop_requested else 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if started:
            logger.info("shutting down")
        if ray_conn is not None and ray_conn.owns_cluster:
            if supervisor is not None:
                with suppress(Exception):
                    ray.get(supervisor.shutdown.remote(), timeout=15)
            with suppress(Exception):
                ray.shutdown()
        elif ray_conn is not None:
            with suppress(Exception):
                ray.shutdown()  # leave the cluster; its actors keep recording
        if embedded is not None:
            embedded.stop()
        held.release()
        if started:
            print("heldar stopped", file=sys.stderr, flush=True)
