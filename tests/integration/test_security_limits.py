"""Request limits against a real uvicorn server process (security F3a, F3b, F11): 100 MB bodies are refused
with 413 without the server growing, made-up HTTP methods do not grow /metrics, event streams are capped
(429) and every open stream shares one database read per notification burst."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from config import load_settings
from heldar.store.database import connect

pytestmark = pytest.mark.integration

ADMIN_USER, ADMIN_PASSWORD = "limits-admin", "Limits-Admin-Pw1"
MB = 1024 * 1024

SERVER = """
import asyncio, sys, uvicorn
from api.app import create_app
from api.auth_wiring import bootstrap_admin
from config import load_settings
settings = load_settings()
url = sys.argv[1]
asyncio.run(bootstrap_admin(settings, url))
uvicorn.run(create_app(settings, url), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    port = free_port()
    env = {
        **os.environ,
        "HELDAR_DATA_DIR": str(tmp_path_factory.mktemp("limits")),
        "HELDAR_BOOTSTRAP_ADMIN_USER": ADMIN_USER,
        "HELDAR_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "HELDAR_PASSWORD_HASH_TIME_COST": "1",
        "HELDAR_PASSWORD_HASH_MEMORY_KIB": "8",
        "HELDAR_PASSWORD_HASH_PARALLELISM": "1",
        "HELDAR_EVENTS_STREAM_MAX": "3",
        "HELDAR_EVENTS_STREAM_MAX_PER_PRINCIPAL": "2",
        "HELDAR_EVENTS_STREAM_KEEPALIVE_S": "0.5",
        "HELDAR_WEBHOOKS_ENABLED": "false",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    proc = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port)], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        token = request(port, "POST", "/api/v1/auth/login", {"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        yield {"port": port, "proc": proc, "url": url, "token": token[1]["token"]}
    finally:
        proc.terminate()
        proc.wait(15)


def request(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    data = r.read()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data.decode(errors="replace")


def rss(proc: subprocess.Popen[bytes]) -> int:
    return int(psutil.Process(proc.pid).memory_info().rss)


def stream_body(port: int, path: str, total: int, *, chunked: bool, token: str | None = None) -> int:
    """POST ``total`` bytes (JSON-looking) in 64 KiB pieces, never holding them; the status the server answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    piece = b'{"username": "' + b"a" * (64 * 1024 - 14)
    sent = 0
    try:
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered already
            data = piece if not chunked else b"%x\r\n%s\r\n" % (len(piece), piece)
            sock.sendall(data)
            sent += len(piece)
        if chunked and sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = b""
    try:
        while b"\r\n" not in reply:
            got = sock.recv(4096)
            if not got:
                break
            reply += got
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    assert reply.startswith(b"HTTP/1.1 "), reply[:100]
    return int(reply.split()[1])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100_mb_bodies_get_413_without_the_server_growing(server: dict[str, Any], chunked: bool) -> None:
    port, proc, token = server["port"], server["proc"], server["token"]
    # the ingest route has its own, larger limit: 4 MiB passes the size check (then fails validation)
    assert stream_body(port, "/api/v1/ai/events", 4 * MB, chunked=chunked, token=token) == 422
    stream_body(port, "/api/v1/auth/login", 2 * MB, chunked=chunked)  # warm up the code paths
    before = rss(proc)
    for _ in range(2):
        assert stream_body(port, "/api/v1/auth/login", 100 * MB, chunked=chunked) == 413
        assert stream_body(port, "/api/v1/cameras", 100 * MB, chunked=chunked, token=token) == 413
    grown = rss(proc) - before
    assert grown < 6 * MB, f"server grew by {grown / MB:.1f} MiB"
    # past its own 8 MiB limit the ingest route refuses too (it may buffer up to that limit first)
    assert stream_body(port, "/api/v1/ai/events", 100 * MB, chunked=chunked, token=token) == 413
    # an ordinary request still works afterwards
    assert request(port, "GET", "/api/v1/auth/me", token=token)[0] == 200


def metric_series(port: int, token: str) -> list[str]:
    status, text = request(port, "GET", "/metrics", token=token)
    assert status == 200
    return [line for line in text.splitlines() if line.startswith("heldar_http_request_duration_seconds_count")]


def test_1000_made_up_methods_do_not_grow_metrics(server: dict[str, Any]) -> None:
    port, token = server["port"], server["token"]
    for method in ("XYZZY", "M0", "M1"):
        request(port, method, "/healthz")
    before = metric_series(port, token)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(1000):
        conn.request(f"M{i:04d}X", "/healthz")
        conn.getresponse().read()
    after = metric_series(port, token)
    assert not [s for s in after if "M0" in s and "other" not in s]
    new = set(after) - set(before)
    assert len(new) <= 2, new  # at most the /metrics route's own series appear
    assert any('method="other"' in s for s in after)


def open_stream(port: int, token: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/v1/events/stream", headers={"Authorization": f"Bearer {token}",
                                                         "Accept": "text/event-stream"})  # fmt: skip
    return conn, conn.getresponse()


def test_event_streams_are_capped_and_a_closed_stream_frees_its_slot(server: dict[str, Any]) -> None:
    port, token = server["port"], server["token"]
    _, key = request(port, "POST", "/api/v1/api-keys", {"name": "viewer", "role": "viewer"}, token)
    viewer = key["key"]
    a = open_stream(port, token)
    b = open_stream(port, token)
    assert a[1].status == 200 and b[1].status == 200
    third = open_stream(port, token)  # third for one credential
    assert third[1].status == 429 and third[1].getheader("Retry-After")
    third[0].close()
    c = open_stream(port, viewer)
    assert c[1].status == 200
    d = open_stream(port, viewer)  # fourth in total
    assert d[1].status == 429
    d[0].close()
    a[0].close()
    a[1].close()
    deadline = time.monotonic() + 10
    while True:  # the server notices the disconnect at its next keep-alive write
        e = open_stream(port, viewer)
        if e[1].status == 200:
            break
        e[0].close()
        assert time.monotonic() < deadline, "a closed stream never freed its slot"
        time.sleep(0.3)
    for conn, _ in (b, c, e):
        conn.close()


def test_one_database_read_per_burst_for_all_streams(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Twenty streams in one process see an event; the rows are read from the database once, not 20 times."""
    import threading

    import uvicorn

    from api.app import create_app
    from api.routers.events import _shared_rows

    url = new_database()
    settings = load_settings(data_dir=tmp_path, auth_enabled=False, webhooks_enabled=False,
                             events_stream_max_per_principal=50, events_stream_keepalive_s=0.5)  # fmt: skip
    app = create_app(settings, url)
    state = app.state.heldar
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started or not state.extras.get("event_broadcaster") or \
                not state.extras["event_broadcaster"].connected.is_set():  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.1)
        got: list[int] = []

        def one() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.request("GET", "/api/v1/events/stream", headers={"Accept": "text/event-stream"})
            r = conn.getresponse()
            assert r.status == 200
            while True:
                line = r.fp.readline()
                if not line:
                    return
                if line.startswith(b"event: unit_test_event"):
                    got.append(1)
                    conn.close()
                    return

        readers = [threading.Thread(target=one) for _ in range(20)]
        for t in readers:
            t.start()
        while sum(state.extras.get("event_streams_open", {}).values()) < 20:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)

        async def insert() -> None:
            conn = await connect(url)
            try:
                await conn.execute(
                    "INSERT INTO events (id, camera_id, event_type, severity, timestamp, payload)"
                    " VALUES (gen_random_uuid(), NULL, 'unit_test_event', 'info', now(), '{}')"
                )
            finally:
                await conn.close()

        asyncio.run(insert())
        for t in readers:
            t.join(20)
        assert len(got) == 20
        assert _shared_rows(state, state.pool).queries == 1
    finally:
        server.should_exit = True
        thread.join(15)
