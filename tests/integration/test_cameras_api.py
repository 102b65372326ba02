"""Camera registry over HTTP with real PostgreSQL and a real supervisor actor in Ray."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import ray
from fastapi.testclient import TestClient

from actors.handles import ensure_supervisor
from api.app import create_app
from api.supervisor_link import SupervisorLink
from config import load_settings

pytestmark = pytest.mark.integration

SECRET = "Sup3r-Secret-pw!"


@pytest.fixture(scope="module")
def db_url(new_database) -> str:  # type: ignore[no-untyped-def]
    return new_database()


@pytest.fixture(scope="module")
def supervisor(db_url: str, ray_session: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    settings = load_settings(ray_namespace=ray_session, data_dir=tmp_path_factory.mktemp("sup"), recorder_enabled=False)
    handle = ensure_supervisor(settings, db_url)
    yield handle
    ray.get(handle.shutdown.remote(), timeout=60)
    ray.kill(handle)


@pytest.fixture
def client(db_url: str, supervisor, ray_session: str, tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = load_settings(auth_enabled=False, data_dir=tmp_path, ray_namespace=ray_session)
    app = create_app(settings, db_url, supervisor=SupervisorLink(ray_session))
    with TestClient(app) as c:
        yield c


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_crud_round_trip_and_supervisor_tracks_it(client: TestClient, supervisor, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    body = {
        "name": "Front Door",
        "vendor": "hikvision",
        "address": "10.0.0.5",
        "username": "admin",
        "password": SECRET,
        "segment_seconds": 10,
    }
    created = client.post("/api/v1/cameras", json=body)
    assert created.status_code == 201, created.text
    cam = created.json()
    assert cam["id"] == "front-door"
    assert cam["has_password"] is True
    assert cam["record_url_masked"] == "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101"
    assert cam["segment_seconds"] == 10 and cam["retention_hours"] == 24
    assert _wait_for(lambda: "front-door" in ray.get(supervisor.desired_cameras.remote()))

    assert client.get("/api/v1/cameras/front-door").json()["name"] == "Front Door"
    listed = client.get("/api/v1/cameras").json()
    assert [c["id"] for c in listed] == ["front-door"]

    patched = client.patch("/api/v1/cameras/front-door", json={"record_enabled": False, "priority": 7})
    assert patched.status_code == 200, patched.text
    assert patched.json()["priority"] == 7 and patched.json()["record_enabled"] is False
    assert _wait_for(lambda: "front-door" not in ray.get(supervisor.desired_cameras.remote()))

    url = "rtsp://viewer:" + SECRET + "@192.168.1.9:8554/live"
    patched = client.patch("/api/v1/cameras/front-door", json={"record_enabled": True, "main_stream_url": url})
    assert patched.json()["main_stream_url"] == "rtsp://viewer:***@192.168.1.9:8554/live"
    assert _wait_for(lambda: "front-door" in ray.get(supervisor.desired_cameras.remote()))

    assert client.delete("/api/v1/cameras/front-door").status_code == 204
    assert client.get("/api/v1/cameras/front-door").status_code == 404
    assert _wait_for(lambda: "front-door" not in ray.get(supervisor.desired_cameras.remote()))

    seen = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in seen
    assert SECRET not in created.text and SECRET not in patched.text


def test_id_derived_explicit_and_duplicate(client: TestClient) -> None:
    ok = client.post("/api/v1/cameras", json={"id": "gate-1", "name": "Gate", "main_stream_url": "rtsp://h/x"})
    assert ok.status_code == 201 and ok.json()["id"] == "gate-1"
    dup = client.post("/api/v1/cameras", json={"id": "gate-1", "name": "Other", "main_stream_url": "rtsp://h/y"})
    assert dup.status_code == 409 and dup.json() == {"error": "camera 'gate-1' already exists"}
    derived = client.post("/api/v1/cameras", json={"name": "Lobby Cam #2", "main_stream_url": "rtsps://h/z"})
    assert derived.json()["id"] == "lobby-cam-2"
    client.delete("/api/v1/cameras/gate-1")
    client.delete("/api/v1/cameras/lobby-cam-2")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "main_stream_url": "http://cam/stream"}, "main_stream_url"),
        ({"name": "x", "main_stream_url": "file:///etc/passwd"}, "main_stream_url"),
        ({"name": "x", "main_stream_url": "rtsp://cam/a b"}, "main_stream_url"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "sub_stream_url": "ftp://h/y"}, "sub_stream_url"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "segment_seconds": 1}, "segment_seconds"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "segment_seconds": 3601}, "segment_seconds"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "vendor": "axis"}, "vendor"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "record_stream": "third"}, "record_stream"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "rtsp_transport": "http"}, "rtsp_transport"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "rtsp_port": 70000}, "rtsp_port"),
        ({"name": "x", "vendor": "hikvision", "address": "10.0.0.1/evil"}, "address"),
        ({"name": "x", "vendor": "hikvision", "address": "a b"}, "address"),
        ({"name": "x", "id": "Bad Id!", "main_stream_url": "rtsp://h/x"}, "id"),
        (
            {"name": "x", "main_stream_url": "rtsp://h/x", "anr_replay_url_template": "gopher://h/"},
            "anr_replay_url_template",
        ),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "retention_hours": 0}, "retention_hours"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "unknown_field": 1}, "unknown_field"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "enabled": "perhaps"}, "enabled"),
        ({"name": "x", "main_stream_url": "rtsp://h/x", "segment_seconds": "ten"}, "segment_seconds"),
        ({"name": "!!!", "main_stream_url": "rtsp://h/x"}, None),
        # a camera without a URL is no error any more (a name is enough): tests/integration/test_name_only_cameras.py
    ],
)
def test_validation_errors_are_422_with_details(client: TestClient, body: dict, field: str | None) -> None:
    body = {**body, "password": SECRET}
    response = client.post("/api/v1/cameras", json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"].startswith("validation failed")
    assert isinstance(payload["details"], list) and payload["details"]
    if field is not None:
        assert any(d["field"] == field for d in payload["details"]), payload
    assert SECRET not in response.text


def test_patch_validation_and_not_found(client: TestClient) -> None:
    client.post("/api/v1/cameras", json={"id": "p1", "name": "P", "main_stream_url": "rtsp://h/x"})
    bad = client.patch("/api/v1/cameras/p1", json={"segment_seconds": 0})
    assert bad.status_code == 422 and bad.json()["details"]
    cleared = client.patch("/api/v1/cameras/p1", json={"main_stream_url": None})  # allowed: a name is enough
    assert cleared.status_code == 200 and cleared.json()["record_url_masked"] is None
    assert client.get("/api/v1/cameras/p1/health").json()["last_error_code"] == "no_stream_url"
    nulled = client.patch("/api/v1/cameras/p1", json={"name": None})
    assert nulled.status_code == 422
    assert client.patch("/api/v1/cameras/nope", json={"priority": 1}).status_code == 404
    assert client.delete("/api/v1/cameras/nope").json() == {"error": "camera 'nope' not found"}
    malformed = client.post("/api/v1/cameras", content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "error" in malformed.json()
    client.delete("/api/v1/cameras/p1")


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    client.get("/api/v1/cameras")
    text = client.get("/metrics").text
    assert 'heldar_build_info{version="' in text
    assert re.search(r"^heldar_cameras \d", text, re.MULTILINE)
    assert 'route="/api/v1/cameras"' in text and "heldar_http_request_duration_seconds_bucket" in text


def test_database_lost_after_start_is_503(new_database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from heldar.store.database import connect

    url = new_database()
    settings = load_settings(auth_enabled=False, data_dir=tmp_path)
    app = create_app(settings, url)
    with TestClient(app) as c:
        assert c.get("/api/v1/cameras").status_code == 200

        async def block_database() -> None:
            name = urlsplit(url).path.lstrip("/")
            conn = await connect(urlunsplit(urlsplit(url)._replace(path="/postgres")))
            try:
                await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            finally:
                await conn.close()

        asyncio.run(block_database())
        response = c.get("/api/v1/cameras")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json() == {"error": "database unavailable; retry shortly"}
        assert c.get("/readyz").status_code == 503
