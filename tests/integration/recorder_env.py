"""Shared set-up for tests that record for real: a supervisor with its own namespace, SQL and waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray

from actors.handles import ensure_supervisor
from config import load_settings
from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.store import cameras as camera_store
from heldar.store.database import create_pool
from tests.integration.sql import sql


def recorder_env(url: str, namespace: str, data_dir: Path, **overrides: Any) -> Iterator[dict[str, Any]]:
    """Yield ``{"url", "settings", "supervisor"}`` for a module; the supervisor stops all its cameras after."""
    values: dict[str, Any] = {
        "ray_namespace": namespace, "data_dir": data_dir, "health_interval_s": 2, "health_timeout_s": 5,
        "indexer_interval_s": 1, "rtsp_timeout_s": 4, **overrides,
    }  # fmt: skip
    settings = load_settings(**values)
    supervisor = ensure_supervisor(settings, url)
    yield {"url": url, "settings": settings, "supervisor": supervisor}
    ray.get(supervisor.shutdown.remote(), timeout=60)
    ray.kill(supervisor)
    with contextlib.suppress(ValueError):  # the retention sweeper the active supervisor started
        ray.kill(ray.get_actor("retention", namespace=namespace))


def db(env: dict[str, Any], query: str, *args: Any) -> list[dict[str, Any]]:
    return sql(env["url"], query, *args)


def add_camera(env: dict[str, Any], camera_id: str, url: str, **fields: Any) -> None:
    """Register a camera straight in the table and have the supervisor pick it up now."""
    camera = Camera.from_create(CameraCreate(id=camera_id, name=camera_id, main_stream_url=url, **fields),
                                RecordingDefaults())  # fmt: skip

    async def run() -> None:
        pool = await create_pool(env["url"], max_size=1)
        try:
            await camera_store.insert_camera(pool, camera)
        finally:
            await pool.close()

    asyncio.run(run())
    ray.get(env["supervisor"].reconcile.remote(camera_id))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
