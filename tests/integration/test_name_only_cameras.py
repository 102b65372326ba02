"""A camera registered with a name only (as upstream allows) is listed in state ``error`` with cause
``no_stream_url`` and gets no recorder until a PATCH gives it a URL; then it records (real PostgreSQL, Ray, ffmpeg
and the RTSP simulator)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import ray
from fastapi.testclient import TestClient

from actors.camera import camera_actor_name
from api.app import create_app
from api.supervisor_link import SupervisorLink
from config import load_settings
from tests.integration.recorder_env import db, recorder_env, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    namespace = f"{ray_session}-noname"
    base = recorder_env(new_database(), namespace, tmp_path_factory.mktemp("noname"))
    env = next(base)
    try:
        settings = load_settings(**{**env["settings"].model_dump(), "auth_enabled": False})
        with TestClient(create_app(settings, env["url"], supervisor=SupervisorLink(namespace))) as client:
            yield {**env, "client": client, "namespace": namespace}
    finally:
        next(base, None)  # the supervisor stops its cameras


def _health(env: dict[str, Any], camera_id: str) -> dict[str, Any]:
    return dict(env["client"].get(f"/api/v1/cameras/{camera_id}/health").json())


def _has_actor(env: dict[str, Any], camera_id: str) -> bool:
    try:
        ray.get_actor(camera_actor_name(camera_id), namespace=env["namespace"])
    except ValueError:
        return False
    return True


def test_a_name_is_enough_and_the_camera_records_once_it_has_a_url(env, sim) -> None:  # type: ignore[no-untyped-def]
    client, supervisor = env["client"], env["supervisor"]
    created = client.post("/api/v1/cameras", json={"name": "Back Porch"})
    assert created.status_code == 201, created.text
    cam = created.json()
    assert cam["id"] == "back-porch" and cam["main_stream_url"] is None and cam["record_url_masked"] is None
    assert cam["enabled"] and cam["record_enabled"] and cam["segment_seconds"] == 60  # HELDAR_DEFAULT_* applied

    health = _health(env, "back-porch")
    assert health["state"] == "error" and health["last_error_code"] == "no_stream_url", health
    assert "stream URL" in health["last_error"]
    listed = {s["camera_id"]: s for s in client.get("/api/v1/health/cameras").json()}
    assert listed["back-porch"]["state"] == "error"
    # the stored row says so too, for readers of the raw row (the MQTT state topic)
    assert db(env, "SELECT state, last_error_code FROM camera_status WHERE camera_id = 'back-porch'") == [
        {"state": "error", "last_error_code": "no_stream_url"}
    ]
    metrics = client.get("/metrics").text
    assert re.search(r'^heldar_camera_state\{camera="back-porch",state="error"\} 1\.0$', metrics, re.MULTILINE)
    # the supervisor does not want it recorded and starts nothing for it
    assert "back-porch" not in ray.get(supervisor.reconcile.remote("back-porch"))["start"]
    assert "back-porch" not in ray.get(supervisor.desired_cameras.remote())
    assert not _has_actor(env, "back-porch")
    assert _health(env, "back-porch")["state"] == "error"

    sim.add_camera("porch")
    patched = client.patch("/api/v1/cameras/back-porch", json={"main_stream_url": sim.url("porch"),
                                                                "segment_seconds": 2})  # fmt: skip
    assert patched.status_code == 200, patched.text
    wait_for(lambda: _health(env, "back-porch")["state"] == "recording", 60, "recording once the URL is set")
    wait_for(lambda: db(env, "SELECT 1 FROM segments WHERE camera_id = 'back-porch'"), 30, "an indexed segment")
    assert _health(env, "back-porch")["last_error_code"] != "no_stream_url"

    # clearing the URL again is allowed: the recorder stops and the cause shows again
    cleared = client.patch("/api/v1/cameras/back-porch", json={"main_stream_url": None})
    assert cleared.status_code == 200, cleared.text
    wait_for(lambda: not _has_actor(env, "back-porch"), 30, "the recorder to stop")
    health = _health(env, "back-porch")
    assert health["state"] == "error" and health["last_error_code"] == "no_stream_url", health
    assert client.delete("/api/v1/cameras/back-porch").status_code == 204


def test_a_name_only_camera_that_is_disabled_shows_disabled(env) -> None:  # type: ignore[no-untyped-def]
    client = env["client"]
    created = client.post("/api/v1/cameras", json={"name": "Shed", "enabled": False})
    assert created.status_code == 201, created.text
    assert _health(env, "shed")["state"] == "disabled"
    assert client.delete("/api/v1/cameras/shed").status_code == 204


def test_the_desired_set_query_agrees_with_the_model_on_every_url_shape(new_database) -> None:  # type: ignore[no-untyped-def]
    """``HAS_STREAM_URL_SQL`` (the supervisor's desired set) and ``Camera.has_stream_url`` say the same."""
    import asyncio
    import itertools

    from heldar.models.cameras import Camera
    from heldar.store import cameras as camera_store
    from heldar.store.database import create_pool

    shapes = itertools.product(("generic", "hikvision", "dahua"), (None, "10.0.0.5"), (None, "rtsp://h/main"),
                               (None, "rtsp://h/sub"), ("main", "sub"))  # fmt: skip
    cameras = [
        Camera(id=f"c{i}", name=f"c{i}", vendor=v, address=a, main_stream_url=m, sub_stream_url=s, record_stream=r)
        for i, (v, a, m, s, r) in enumerate(shapes)
    ]

    url = new_database()

    async def run() -> set[str]:
        pool = await create_pool(url, max_size=2)
        try:
            for camera in cameras:
                await camera_store.insert_camera(pool, camera)
            return set(await camera_store.camera_ids_to_record(pool))
        finally:
            await pool.close()

    wanted = {c.id for c in cameras if c.has_stream_url()}
    assert 0 < len(wanted) < len(cameras)
    assert asyncio.run(run()) == wanted
