"""``heldar serve``: the all-in-one runtime (embedded database, local Ray, supervisor, API).

With ``HELDAR_DATABASE_URL`` and ``HELDAR_RAY_ADDRESS`` set it only joins them, and stopping it leaves
the cluster (and recording) running. SIGINT/SIGTERM stop whatever this process started.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import uvicorn

from config import Settings
from heldar.store.database import EmbeddedPostgres, connect
from heldar.store.migrate import migrate

logger = logging.getLogger(__name__)


async def prepare_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """Start the embedded server when no URL is configured, then apply migrations."""
    embedded = None
    url = settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir / "pg")
        url = await asyncio.to_thread(embedded.start)
    conn = await connect(url, timeout=settings.db_connect_timeout_s)
    try:
        applied = await migrate(conn)
        if applied:
            logger.info("database migrated to version %s", applied[-1])
    finally:
        await conn.close()
    return url, embedded


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


def run(
    settings: Settings,
    *,
    on_ready: Callable[[str, Any], None] | None = None,
    banner_extra: Callable[[str], list[str]] | None = None,
) -> int:
    """Run until SIGINT/SIGTERM; return the exit status."""
    import ray

    from actors.cluster import connect_ray
    from actors.handles import ensure_supervisor
    from api.app import create_app
    from api.auth_wiring import bootstrap_admin
    from api.supervisor_link import SupervisorLink

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
    try:
        database_url, embedded = asyncio.run(prepare_database(settings))
        asyncio.run(bootstrap_admin(settings, database_url))
        ray_conn = connect_ray(settings)
        supervisor = ensure_supervisor(settings, database_url)
        if on_ready is not None:
            on_ready(database_url, supervisor)
        # uvicorn captures SIGINT/SIGTERM while serving and re-raises them once it has stopped; this
        # handler makes that re-raise a no-op so the cleanup below always runs.
        for sig in previous:
            signal.signal(sig, _note_stop)
        app = create_app(settings, database_url, supervisor=SupervisorLink(settings.ray_namespace))
        config = uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)

        async def _serve() -> None:
            serving = asyncio.get_running_loop().create_task(server.serve())
            while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn offers no event
                await asyncio.sleep(0.05)
            if server.started:
                base = _print_banner(settings, server, ray_conn.dashboard_url)
                for line in banner_extra(base) if banner_extra else []:
                    print(line, flush=True)
            await serving

        asyncio.run(_serve())
        return 0 if server.started else 1
    except KeyboardInterrupt:
        return 0 if stop_requested else 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
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
        print("heldar stopped", file=sys.stderr, flush=True)
