"""The event log over HTTP: list/filters/types, scope, and the live stream (SSE over LISTEN/NOTIFY) on a real
uvicorn server: an event written by another connection arrives within a second; Last-Event-ID resumes."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.auth_wiring import bootstrap_admin
from heldar.store import event_reads
from heldar.store.database import connect
from heldar.store.event_reads import EventFilter
from heldar.store.events import insert_event
from tests.integration.test_auth_api import ADMIN_PASSWORD, ADMIN_USER, settings_for, sql

pytestmark = pytest.mark.integration

T0 = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


def write_event(url: str, event_type: str, camera_id: str | None = "cam-1", **kw: Any) -> str:
    """Insert through ``insert_event`` on a separate connection, as another process would."""

    async def run() -> str:
        conn = await connect(url)
        try:
            return await insert_event(conn, event_type, camera_id=camera_id, **kw)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def server(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = settings_for(tmp_path_factory.mktemp("events"), webhooks_enabled=False, events_stream_keepalive_s=1)
    asyncio.run(bootstrap_admin(settings, url))
    app = create_app(settings, url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        token = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}).json()
        admin = {"Authorization": f"Bearer {token['token']}"}
        client.cookies.clear()
        keys = {}
        for role in ("viewer", "guard"):
            r = client.post("/api/v1/api-keys", json={"name": role, "role": role, "confirm_privileged": True},
                            headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
            keys[role] = {"X-API-Key": r.json()["key"]}
        for cam in ("cam-1", "cam-2"):
            r = client.post("/api/v1/cameras", json={"id": cam, "name": cam, "main_stream_url": "rtsp://h/x"},
                            headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
        yield {"url": url, "base": base, "client": client, "admin": admin, "keys": keys}
    srv.should_exit = True
    thread.join(15)


def test_list_filters_order_and_types(server: dict[str, Any]) -> None:
    url, client, viewer = server["url"], server["client"], server["keys"]["viewer"]
    write_event(url, "camera_offline", severity="warning", timestamp=T0, payload={"cause": "timeout"})
    write_event(url, "recording_gap", timestamp=T0 + timedelta(seconds=5))
    write_event(url, "recording_gap", camera_id="cam-2", timestamp=T0 + timedelta(seconds=9), severity="critical")
    write_event(url, "disk_pressure", camera_id=None, timestamp=T0 + timedelta(seconds=7))
    window = {"from": T0.isoformat(), "to": (T0 + timedelta(minutes=1)).isoformat()}
    rows = client.get("/api/v1/events", params=window, headers=viewer).json()
    assert [r["event_type"] for r in rows] == ["recording_gap", "disk_pressure", "recording_gap", "camera_offline"]
    assert rows[-1]["payload"] == {"cause": "timeout"} and all(isinstance(r["seq"], int) for r in rows)
    by_cam = client.get("/api/v1/events", params={**window, "camera_id": "cam-1"}, headers=viewer).json()
    assert [r["event_type"] for r in by_cam] == ["recording_gap", "camera_offline"]
    warn = client.get("/api/v1/events", params={**window, "min_severity": "warning"}, headers=viewer).json()
    assert [r["severity"] for r in warn] == ["critical", "warning"]
    exact = client.get("/api/v1/events", params={**window, "severity": "warning"}, headers=viewer).json()
    assert [r["event_type"] for r in exact] == ["camera_offline"]
    typed = client.get("/api/v1/events", params={**window, "event_type": "recording_gap", "limit": 1}, headers=viewer)
    assert [r["camera_id"] for r in typed.json()] == ["cam-2"]
    assert client.get("/api/v1/events?severity=loud", headers=viewer).status_code == 422
    assert client.get("/api/v1/events").status_code == 401
    types = {t["event_type"] for t in client.get("/api/v1/events/types", headers=viewer).json()}
    kernel = {"camera_offline", "recorder_error", "recording_gap", "recording_gap_filled", "recording_gap_failed",
              "sampler_offline", "zone_enter", "zone_exit", "zone_dwell", "zone_cross_ab", "zone_cross_ba"}  # fmt: skip
    assert kernel <= types


def test_scope_hides_other_cameras_and_camera_less_rows(server: dict[str, Any]) -> None:
    async def run() -> list[dict[str, Any]]:
        conn = await connect(server["url"])
        try:
            return await event_reads.list_events(conn, EventFilter(camera_scope={"cam-2"}, start=T0), limit=50)
        finally:
            await conn.close()

    rows = asyncio.run(run())
    assert rows and {r["camera_id"] for r in rows} == {"cam-2"}


class SSEReader:
    """Reads SSE messages from an open httpx stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        msg: dict[str, Any] = {}
        for line in self.lines:
            if line == "":
                if "data" in msg or "comment" in msg:
                    return msg
                continue
            if line.startswith(":"):
                msg["comment"] = line
                continue
            name, _, value = line.partition(": ")
            msg[name] = json.loads(value) if name == "data" else value
        raise EOFError

    def next_event(self, timeout_s: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self.next()
            if "data" in msg:
                return msg
        raise TimeoutError


def stream(server: dict[str, Any], headers: dict[str, str], **params: Any) -> Any:
    headers = {"Accept": "text/event-stream", **headers}
    return server["client"].stream("GET", "/api/v1/events/stream", params=params, headers=headers,
                                   timeout=httpx.Timeout(10, read=5))  # fmt: skip


def test_stream_delivers_within_a_second_and_resumes(server: dict[str, Any]) -> None:
    url, viewer = server["url"], server["keys"]["viewer"]
    with stream(server, viewer) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SSEReader(response)
        ready = reader.next_event()
        assert ready["event"] == "ready"
        written = time.monotonic()
        event_id = write_event(url, "camera_offline", severity="warning", payload={"cause": "refused"})
        msg = reader.next_event()
        latency = time.monotonic() - written
        assert msg["event"] == "camera_offline" and msg["data"]["id"] == event_id
        assert msg["data"]["payload"] == {"cause": "refused"} and msg["id"] == str(msg["data"]["seq"])
        assert latency < 1.0, latency
        last_id = msg["id"]
        write_event(url, "recording_gap", payload={"n": 1})
        assert reader.next_event()["data"]["payload"] == {"n": 1}
    # disconnected: two more are written; resuming after the first one replays both, in order, then goes live
    a = write_event(url, "recording_gap_filled", payload={"n": 2})
    b = write_event(url, "recording_gap_failed", camera_id="cam-2", payload={"n": 3})
    with stream(server, {**viewer, "Last-Event-ID": last_id}) as response:
        reader = SSEReader(response)
        assert reader.next_event()["event"] == "ready"
        got = [reader.next_event()["data"] for _ in range(3)]
        assert [g["payload"] for g in got] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert [g["id"] for g in got[1:]] == [a, b]
        c = write_event(url, "sampler_offline")
        assert reader.next_event()["data"]["id"] == c


def test_stream_filters_and_auth(server: dict[str, Any]) -> None:
    url, viewer = server["url"], server["keys"]["viewer"]
    with stream(server, viewer, camera_id="cam-2", min_severity="warning") as response:
        reader = SSEReader(response)
        assert reader.next_event()["event"] == "ready"
        write_event(url, "camera_offline", camera_id="cam-1", severity="critical")
        write_event(url, "camera_offline", camera_id="cam-2", severity="info")
        wanted = write_event(url, "camera_offline", camera_id="cam-2", severity="critical")
        assert reader.next_event()["data"]["id"] == wanted
    with stream(server, {}) as response:
        assert response.status_code == 401
    with stream(server, {"X-API-Key": "vok_" + "0" * 64}) as response:
        assert response.status_code == 401
    plain = server["client"].get("/api/v1/events/stream", headers=viewer)  # Accept: */* only
    assert plain.status_code == 406 and "text/event-stream" in plain.json()["error"]


def test_stream_sends_keep_alives(server: dict[str, Any]) -> None:
    with stream(server, server["keys"]["guard"]) as response:
        reader = SSEReader(response)
        assert reader.next_event()["event"] == "ready"
        assert "comment" in reader.next()  # keep-alive every second here


def _gauges(server: dict[str, Any]) -> dict[str, float]:
    text = server["client"].get("/metrics", headers=server["admin"]).text
    return {m[0]: float(m[1]) for m in re.findall(r"^(heldar_(?:event|db_pool)\w*) (\S+)$", text, re.MULTILINE)}


def test_metrics_show_open_streams_the_listener_and_the_pool(server: dict[str, Any]) -> None:
    before = _gauges(server)
    assert before["heldar_event_listener_up"] == 1 and before["heldar_event_streams_open"] == 0
    assert before["heldar_db_pool_max_connections"] == 16  # HELDAR_DB_MAX_CONNECTIONS' default
    assert 1 <= before["heldar_db_pool_connections"] <= 16
    assert 0 <= before["heldar_db_pool_connections_in_use"] <= before["heldar_db_pool_connections"]
    with stream(server, server["keys"]["viewer"]) as response:
        reader = SSEReader(response)
        assert reader.next_event()["event"] == "ready"
        write_event(server["url"], "camera_offline")
        reader.next_event()
        during = _gauges(server)
    assert during["heldar_event_streams_open"] == 1
    assert during["heldar_event_listener_subscribers"] == before["heldar_event_listener_subscribers"] + 1
    notified = "heldar_event_listener_notifications_total"
    assert during[notified] >= before[notified] + 1
    deadline = time.monotonic() + 5
    while _gauges(server)["heldar_event_streams_open"] != 0:
        assert time.monotonic() < deadline, "the closed stream is still counted"
        time.sleep(0.05)
    # the LISTEN connection is cut: it comes back, and the reconnect is counted
    killed = sql(server["url"], "SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity"
                 " WHERE datname = current_database() AND query ILIKE 'LISTEN%'")  # fmt: skip
    assert killed and all(r["gone"] for r in killed)
    deadline = time.monotonic() + 15
    while True:
        after = _gauges(server)
        if after["heldar_event_listener_reconnects_total"] > before["heldar_event_listener_reconnects_total"]:
            break
        assert time.monotonic() < deadline, "the listener's reconnect is not counted"
        time.sleep(0.1)
    assert after["heldar_event_listener_up"] == 1


def test_notify_trigger_fires_for_every_writer(server: dict[str, Any]) -> None:
    rows = sql(server["url"], "SELECT tgname FROM pg_trigger WHERE tgname = 'events_notify'")
    assert rows == [{"tgname": "events_notify"}]
