"""Camera probes and URLs (security F5, F8): metadata addresses refused in every spelling, the allow-list,
/test needs camera management and runs one probe per camera and a few in total, and ffmpeg does not follow
an HTTP redirect from camera input (a control run without the options shows that it would)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from heldar.media.binary import ffmpeg_exe
from heldar.media.recorder_command import BackfillSpec, build_backfill_argv
from tests.integration.test_auth_api import bearer, login, mint, settings_for, start

pytestmark = pytest.mark.integration

METADATA_URLS = [
    "rtsp://169.254.169.254/live",
    "rtsp://2852039166/live",  # 169.254.169.254 as one decimal number
    "rtsp://0xa9fea9fe/live",
    "rtsp://[::ffff:169.254.169.254]/live",
    "rtsp://[fd00:ec2::254]/live",
    "rtsp://100.100.100.200/live",
]


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = settings_for(tmp_path_factory.mktemp("urls"), camera_probe_max_concurrent=2)
    with start(url, settings) as client:
        admin = login(client)
        keys = {role: mint(client, admin, name=role, role=role, confirm_privileged=True)["key"]
                for role in ("viewer", "manager")}  # fmt: skip
        yield {"client": client, "admin": admin, "keys": keys}


def as_role(env: dict[str, Any], role: str) -> dict[str, str]:
    return {"X-API-Key": env["keys"][role]}


@pytest.mark.parametrize("stream", METADATA_URLS)
def test_metadata_stream_urls_are_refused(env: dict[str, Any], stream: str) -> None:
    r = env["client"].post("/api/v1/cameras", json={"name": "m", "main_stream_url": stream},
                           headers=as_role(env, "manager"))  # fmt: skip
    assert r.status_code == 422, r.text
    assert "metadata" in r.text


@pytest.mark.parametrize(
    "replay",
    ["http://169.254.169.254/latest/meta-data/iam/?from={start}", "http://2852039166/x?s={start}&e={end}",
     "https://[fd00:ec2::254]/x?{start}"],
)  # fmt: skip
def test_metadata_replay_urls_are_refused_on_create_and_patch(env: dict[str, Any], replay: str) -> None:
    client, headers = env["client"], as_role(env, "manager")
    r = client.post("/api/v1/cameras", json={"name": "r", "main_stream_url": "rtsp://10.0.0.5/live",
                                             "anr_replay_url_template": replay}, headers=headers)  # fmt: skip
    assert r.status_code == 422, r.text
    cam = client.post("/api/v1/cameras", json={"name": f"ok-{abs(hash(replay)) % 10000}",
                                               "main_stream_url": "rtsp://10.0.0.5/live"}, headers=headers)  # fmt: skip
    assert cam.status_code == 201, cam.text
    r = client.patch(f"/api/v1/cameras/{cam.json()['id']}", json={"anr_replay_url_template": replay}, headers=headers)
    assert r.status_code == 422, r.text
    # LAN and loopback cameras stay allowed by default
    for fine in ("rtsp://192.168.1.64/live", "rtsp://127.0.0.1:8554/live", "rtsp://[fe80::1]/live"):
        r = client.patch(f"/api/v1/cameras/{cam.json()['id']}", json={"main_stream_url": fine}, headers=headers)
        assert r.status_code == 200, r.text


def test_the_allow_list_confines_camera_hosts(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(tmp_path, camera_allowed_cidrs="10.20.0.0/16, 192.168.7.9")
    with start(new_database(), settings) as client:
        admin = login(client)
        ok = client.post("/api/v1/cameras", json={"name": "a", "main_stream_url": "rtsp://10.20.3.4/x"},
                         headers=bearer(admin))  # fmt: skip
        assert ok.status_code == 201, ok.text
        assert client.post("/api/v1/cameras", json={"name": "b", "main_stream_url": "rtsp://192.168.7.9/x"},
                           headers=bearer(admin)).status_code == 201  # fmt: skip
        for outside in ("rtsp://127.0.0.1/x", "rtsp://10.21.0.1/x", "rtsp://unresolvable-name.invalid/x"):
            r = client.post("/api/v1/cameras", json={"name": "c", "main_stream_url": outside}, headers=bearer(admin))
            assert r.status_code == 422, (outside, r.text)
        r = client.patch("/api/v1/cameras/a", json={"vendor": "hikvision", "address": "172.16.0.1",
                                                     "main_stream_url": None}, headers=bearer(admin))  # fmt: skip
        assert r.status_code == 422, r.text


class SilentRtsp:
    """A TCP server that accepts and says nothing: a probe against it runs until ffmpeg's timeout."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.conns: list[Any] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_stream_tests_need_management_and_are_limited(env: dict[str, Any]) -> None:
    client, manager = env["client"], as_role(env, "manager")
    silent = SilentRtsp()
    try:
        for name in ("p1", "p2", "p3"):
            r = client.post("/api/v1/cameras", json={"id": name, "name": name,
                            "main_stream_url": f"rtsp://127.0.0.1:{silent.port}/{name}"}, headers=manager)  # fmt: skip
            assert r.status_code == 201, r.text
        assert client.post("/api/v1/cameras/p1/test", headers=as_role(env, "viewer")).status_code == 403
        assert client.get("/api/v1/cameras/p1/test", headers=as_role(env, "viewer")).status_code == 403

        def probe(name: str) -> int:
            return int(client.post(f"/api/v1/cameras/{name}/test", headers=manager).status_code)

        with ThreadPoolExecutor(max_workers=8) as pool:
            first = pool.submit(probe, "p1")
            deadline = time.monotonic() + 10
            while len(silent.conns) < 1:  # the first probe is connected and waiting
                assert time.monotonic() < deadline
                time.sleep(0.05)
            same = [pool.submit(probe, "p1") for _ in range(4)]
            assert [f.result() for f in same] == [429] * 4  # one probe per camera
            second = pool.submit(probe, "p2")
            while len(silent.conns) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert probe("p3") == 429  # two in total
            assert first.result() == 200 and second.result() == 200  # (reachable: false, after the timeout)
        assert len(silent.conns) == 2  # the camera never saw more than the two allowed sessions
        assert probe("p3") == 200  # slots are free again
    finally:
        silent.close()


class RedirectPair:
    """``A`` answers every GET with a 302 to ``B``; ``B`` counts what reaches it."""

    def __init__(self) -> None:
        self.hits_b: list[str] = []
        pair = self

        class B(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pair.hits_b.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.b = ThreadingHTTPServer(("127.0.0.1", 0), B)
        b_port = self.b.server_address[1]

        class A(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{b_port}/landed")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.a = ThreadingHTTPServer(("127.0.0.1", 0), A)
        for server in (self.a, self.b):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.a.server_address[1]}/replay.mp4"

    def close(self) -> None:
        for server in (self.a, self.b):
            server.shutdown()
            server.server_close()


def test_a_replay_url_that_redirects_is_not_followed(tmp_path: Path) -> None:
    pair = RedirectPair()
    try:
        # control: plain ffmpeg follows the redirect (so the assertion below can fail)
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-timeout", "3000000", "-i", pair.url,
                        "-f", "null", "-"], capture_output=True, timeout=30)  # fmt: skip
        assert pair.hits_b == ["/landed"]
        pair.hits_b.clear()
        spec = BackfillSpec(input_url=pair.url, output_path=tmp_path / "out.mp4", duration_s=2, timeout_s=3)
        done = subprocess.run(build_backfill_argv(spec, ffmpeg_exe()), capture_output=True, timeout=30)
        assert done.returncode != 0
        assert pair.hits_b == []
    finally:
        pair.close()
