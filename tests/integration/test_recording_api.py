"""Recording read side over HTTP: segments, timeline, gaps, health, stream test, media files, metrics.

Real PostgreSQL (rows seeded with SQL), real mp4 files made by ffmpeg, a real RTSP simulator.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from config import load_settings
from heldar.auth.capabilities import ROLE_CAPABILITIES, Principal
from heldar.fakecam import FakeCamSimThread
from heldar.ids import new_id
from heldar.media.binary import ffmpeg_exe
from heldar.store.database import connect

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CAM_PASSWORD = "Cam-Pa55word!"
SIM_USER, SIM_PASSWORD = "admin", "s1m-Secret"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def seg_name(start: datetime, run: str = "abc123") -> str:
    return f"{start.strftime('%Y%m%dT%H%M%SZ')}_{run}.mp4"


# cam-a over [T0, T0+100]: a 1.5 s seam (joined), a 3 s hole, a 15.5 s hole; inserted out of order.
CAM_A_SPANS = [(60.0, 70.0), (10.0, 20.0), (34.5, 44.5), (21.5, 31.5)]


async def _seed(db_url: str, root: Path, sample: Path, size: int) -> None:
    now = datetime.now(UTC)
    conn = await connect(db_url)
    try:
        for cam, record_enabled, url in (
            ("cam-a", True, "rtsp://127.0.0.1:9/a"),
            ("cam-off", False, "rtsp://127.0.0.1:9/off"),
            ("cam-live", True, "rtsp://127.0.0.1:9/live"),
        ):
            await conn.execute(  # registered before the footage below: /gaps ignores time before that
                "INSERT INTO cameras (id, name, main_stream_url, record_enabled, created_at)"
                " VALUES ($1, $1, $2, $3, $4)",
                cam, url, record_enabled, T0 - timedelta(days=1),
            )  # fmt: skip
            await conn.execute("INSERT INTO camera_status (camera_id, state) VALUES ($1, 'recording')", cam)
        await conn.execute("INSERT INTO cameras (id, name) VALUES ('no-url', 'No URL')")
        for start, end in CAM_A_SPANS:
            name = seg_name(at(start))
            shutil.copyfile(sample, root / "cam-a" / name)
            await conn.execute(
                "INSERT INTO segments (id, camera_id, file_name, start_time, end_time, duration_s, codec, width,"
                " height, fps, size_bytes) VALUES ($1, 'cam-a', $2, $3, $4, $5, 'h264', 320, 240, 10, $6)",
                new_id("seg"), name, at(start), at(end), end - start, size,
            )  # fmt: skip
        live_start, live_end = now - timedelta(seconds=120), now - timedelta(seconds=60)
        await conn.execute(
            "INSERT INTO segments (id, camera_id, file_name, start_time, end_time, duration_s, size_bytes)"
            " VALUES ($1, 'cam-live', $2, $3, $4, 60, 1000)",
            new_id("seg"), seg_name(live_start), live_start, live_end,
        )  # fmt: skip
        await conn.execute(
            "UPDATE camera_status SET reconnect_count = 3, segments_written = 4, bitrate_kbps = 512.5,"
            " last_segment_at = $1, restart_count = 3, restarts_by_cause = $2, last_error = 'stalled once'"
            " WHERE camera_id = 'cam-a'",
            now - timedelta(seconds=5), {"stall": 2, "crash": 1},
        )  # fmt: skip
        await conn.execute("UPDATE camera_status SET state = 'offline' WHERE camera_id = 'cam-live'")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def sample_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "sample.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=320x240:rate=10", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("media")
    (base / "secret.mp4").write_bytes(b"OUTSIDE-THE-TREE" * 64)
    return base / "recordings"


@pytest.fixture(scope="module")
def db_url(new_database, recordings: Path, sample_mp4: Path) -> str:  # type: ignore[no-untyped-def]
    url = new_database()
    (recordings / "cam-a").mkdir(parents=True)
    asyncio.run(_seed(url, recordings, sample_mp4, sample_mp4.stat().st_size))
    return url


@pytest.fixture(scope="module")
def client(db_url: str, recordings: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = load_settings(auth_enabled=False, data_dir=tmp_path_factory.mktemp("data"), recordings_dir=recordings)
    with TestClient(create_app(settings, db_url)) as c:
        yield c


@pytest.fixture(scope="module")
def sim() -> Iterator[FakeCamSimThread]:
    with FakeCamSimThread(host="127.0.0.1", port=0, control_port=0) as runner:
        runner.add_camera("secure", SIM_USER, SIM_PASSWORD)
        yield runner


def _seg_starts(body: list[dict[str, Any]]) -> list[str]:
    return [s["start_time"] for s in body]


# --- segments ----------------------------------------------------------------------------------------


def test_segments_window_order_and_url(client: TestClient) -> None:
    r = client.get("/api/v1/cameras/cam-a/segments", params={"from": iso(at(25)), "to": iso(at(40))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert _seg_starts(body) == [iso(at(21.5)), iso(at(34.5))]
    first = body[0]
    assert first["url"] == f"/media/recordings/cam-a/{first['file_name']}"
    assert first["camera_id"] == "cam-a" and first["id"].startswith("seg_")
    assert first["codec"] == "h264" and first["duration_s"] == 10.0

    everything = client.get("/api/v1/cameras/cam-a/segments").json()
    assert _seg_starts(everything) == [iso(at(s)) for s in (10, 21.5, 34.5, 60)]  # oldest first


def test_segments_limit_is_clamped(client: TestClient) -> None:
    newest_two = client.get("/api/v1/cameras/cam-a/segments", params={"limit": 2}).json()
    assert _seg_starts(newest_two) == [iso(at(34.5)), iso(at(60))]  # the newest, oldest first
    assert _seg_starts(client.get("/api/v1/cameras/cam-a/segments", params={"limit": 0}).json()) == [iso(at(60))]
    assert len(client.get("/api/v1/cameras/cam-a/segments", params={"limit": -5}).json()) == 1
    assert len(client.get("/api/v1/cameras/cam-a/segments", params={"limit": 10**6}).json()) == 4
    in_window = client.get(
        "/api/v1/cameras/cam-a/segments", params={"from": iso(at(0)), "to": iso(at(100)), "limit": 3}
    ).json()
    assert _seg_starts(in_window) == [iso(at(s)) for s in (10, 21.5, 34.5)]


def test_segments_errors(client: TestClient) -> None:
    missing = client.get("/api/v1/cameras/nope/segments")
    assert missing.status_code == 404 and "error" in missing.json()
    for params in ({"from": "yesterday"}, {"to": "2026-01-01T12:00:00"}, {"from": "2026-13-01T00:00:00Z"}):
        bad = client.get("/api/v1/cameras/cam-a/segments", params=params)
        assert bad.status_code == 422, params
        assert bad.json()["details"][0]["field"] in ("from", "to")
    reversed_window = client.get("/api/v1/cameras/cam-a/segments", params={"from": iso(at(50)), "to": iso(at(10))})
    assert reversed_window.status_code == 422 and "from" in reversed_window.json()["error"]
    assert client.get("/api/v1/cameras/cam-a/segments", params={"limit": "many"}).status_code == 422
    # An unencoded "+00:00" offset (a space after query decoding) is still understood.
    spaced = client.get("/api/v1/cameras/cam-a/segments?from=2026-01-01T12:00:25+00:00&to=2026-01-01T12:00:40+00:00")
    assert spaced.status_code == 200 and len(spaced.json()) == 2


# --- timeline and gaps -------------------------------------------------------------------------------


def test_timeline_joins_short_seams_only(client: TestClient) -> None:
    r = client.get("/api/v1/cameras/cam-a/timeline", params={"from": iso(at(0)), "to": iso(at(100))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["camera_id"] == "cam-a" and body["from"] == iso(at(0)) and body["to"] == iso(at(100))
    assert [(x["start"], x["end"], x["seconds"]) for x in body["ranges"]] == [
        (iso(at(10)), iso(at(31.5)), 21.5),  # the 1.5 s seam is joined
        (iso(at(34.5)), iso(at(44.5)), 10.0),  # the 3 s hole is not
        (iso(at(60)), iso(at(70)), 10.0),
    ]
    assert body["recorded_seconds"] == 40.0 and body["segment_count"] == 4

    clipped = client.get("/api/v1/cameras/cam-a/timeline", params={"from": iso(at(15)), "to": iso(at(65))}).json()
    assert clipped["ranges"][0]["start"] == iso(at(15)) and clipped["ranges"][-1]["end"] == iso(at(65))
    assert clipped["recorded_seconds"] == 5 + 10 + 10 + 5
    default = client.get("/api/v1/cameras/cam-a/timeline").json()  # last 24 h: nothing
    assert default["ranges"] == [] and default["segment_count"] == 0
    assert client.get("/api/v1/cameras/nope/timeline").status_code == 404
    assert (
        client.get("/api/v1/cameras/cam-a/timeline", params={"from": iso(at(9)), "to": iso(at(1))}).status_code == 422
    )


def test_gaps_with_leading_middle_and_trailing_holes(client: TestClient) -> None:
    r = client.get("/api/v1/cameras/cam-a/gaps", params={"from": iso(at(0)), "to": iso(at(100))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(g["start"], g["end"], g["seconds"], g["open_ended"]) for g in body["gaps"]] == [
        (iso(at(0)), iso(at(10)), 10.0, False),  # leading edge
        (iso(at(31.5)), iso(at(34.5)), 3.0, False),  # 3 s > 2 s; the 1.5 s seam is no gap
        (iso(at(44.5)), iso(at(60)), 15.5, False),
        (iso(at(70)), iso(at(100)), 30.0, True),  # trailing edge
    ]
    assert body["gap_count"] == 4 and body["total_gap_seconds"] == 58.5
    assert client.get("/api/v1/cameras/cam-a/gaps", params={"from": "nope"}).status_code == 422


def test_gap_in_progress_when_to_is_omitted(client: TestClient) -> None:
    before = datetime.now(UTC)
    body = client.get("/api/v1/cameras/cam-live/gaps", params={"from": iso(before - timedelta(minutes=5))}).json()
    after = datetime.now(UTC)
    assert body["gap_count"] == 2
    leading, trailing = body["gaps"]
    assert leading["open_ended"] is False and 170 < leading["seconds"] < 190
    assert trailing["open_ended"] is True
    assert before <= datetime.fromisoformat(trailing["end"]) <= after
    assert 55 < trailing["seconds"] < 75  # the outage since the last segment, still running


# --- health and stream test --------------------------------------------------------------------------


def test_health_list_and_one_row(client: TestClient) -> None:
    rows = client.get("/api/v1/health/cameras").json()
    by_id = {r["camera_id"]: r for r in rows}
    assert {"cam-a", "cam-live", "cam-off"} <= set(by_id) and "no-url" not in by_id
    assert by_id["cam-off"]["state"] == "disabled"
    assert by_id["cam-live"]["state"] == "offline"
    one = client.get("/api/v1/cameras/cam-a/health")
    assert one.status_code == 200
    row = one.json()
    assert row["state"] == "recording" and row["reconnect_count"] == 3 and row["segments_written"] == 4
    assert row["restarts_by_cause"] == {"stall": 2, "crash": 1} and row["bitrate_kbps"] == 512.5
    assert client.get("/api/v1/cameras/nope/health").status_code == 404
    assert client.get("/api/v1/cameras/no-url/health").status_code == 404  # no status row


def _create_camera(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/api/v1/cameras", json=body)
    assert r.status_code == 201, r.text


def test_stream_test_against_simulator(client: TestClient, sim: FakeCamSimThread) -> None:
    _create_camera(
        client,
        {"id": "sim-ok", "name": "Sim", "main_stream_url": sim.url("secure", with_credentials=False),
         "username": SIM_USER, "password": SIM_PASSWORD},
    )  # fmt: skip
    started = time.monotonic()
    r = client.get("/api/v1/cameras/sim-ok/test")
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 12
    body = r.json()
    assert body["reachable"] is True
    assert (body["codec"], body["width"], body["height"]) == ("h264", 640, 360)
    assert body["url"] == f"rtsp://{SIM_USER}:***@127.0.0.1:{sim.port}/secure"
    assert SIM_PASSWORD not in r.text

    assert client.post("/api/v1/cameras/sim-ok/test").json()["reachable"] is True


def test_stream_test_unreachable_and_wrong_password(client: TestClient, sim: FakeCamSimThread) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _create_camera(
        client,
        {"id": "dead", "name": "Dead", "main_stream_url": f"rtsp://127.0.0.1:{port}/live",
         "username": "admin", "password": CAM_PASSWORD},
    )  # fmt: skip
    started = time.monotonic()
    r = client.post("/api/v1/cameras/dead/test")
    assert time.monotonic() - started < 12
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reachable"] is False
    assert "refused" in body["error"]
    assert body["url"] == f"rtsp://admin:***@127.0.0.1:{port}/live"
    assert CAM_PASSWORD not in r.text

    _create_camera(
        client,
        {"id": "sim-bad-pw", "name": "Sim", "main_stream_url": sim.url("secure", with_credentials=False),
         "username": SIM_USER, "password": CAM_PASSWORD},
    )  # fmt: skip
    wrong = client.get("/api/v1/cameras/sim-bad-pw/test")
    assert wrong.json()["reachable"] is False and wrong.json()["error_code"] == "unauthorized"
    assert CAM_PASSWORD not in wrong.text

    assert client.get("/api/v1/cameras/no-url/test").status_code == 400
    assert client.get("/api/v1/cameras/nope/test").status_code == 404


# --- media -------------------------------------------------------------------------------------------


def _media(name_start: float) -> str:
    return f"/media/recordings/cam-a/{seg_name(at(name_start))}"


def test_media_full_and_ranges(client: TestClient, sample_mp4: Path) -> None:
    data = sample_mp4.read_bytes()
    size = len(data)
    full = client.get(_media(10))
    assert full.status_code == 200
    assert full.content == data
    assert full.headers["accept-ranges"] == "bytes" and full.headers["content-type"] == "video/mp4"

    part = client.get(_media(10), headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"

    suffix = client.get(_media(10), headers={"Range": "bytes=-500"})
    assert suffix.status_code == 206 and suffix.content == data[-500:]
    assert suffix.headers["content-range"] == f"bytes {size - 500}-{size - 1}/{size}"

    open_end = client.get(_media(10), headers={"Range": f"bytes={size - 10}-"})
    assert open_end.status_code == 206 and open_end.content == data[-10:]

    unsatisfiable = client.get(_media(10), headers={"Range": f"bytes={size}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"
    assert "error" in unsatisfiable.json()
    assert client.get(_media(10), headers={"Range": "lines=1-2"}).status_code == 400

    head = client.head(_media(10))
    assert head.status_code == 200 and int(head.headers["content-length"]) == size

    # The listed url of each segment is what the media plane serves.
    listed = client.get("/api/v1/cameras/cam-a/segments").json()
    assert all(client.head(s["url"]).status_code == 200 for s in listed)


def _raw_get(client: TestClient, path: str) -> tuple[int, bytes]:
    """GET ``path`` straight through the ASGI app, bypassing URL normalisation."""

    async def call() -> tuple[int, bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1), "server": ("testserver", 80),
        }  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await client.app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")

    return client.portal.call(call)  # type: ignore[union-attr]


def test_media_refuses_traversal_and_symlinks(client: TestClient, recordings: Path) -> None:
    leak = recordings / "cam-a" / "leak.mp4"
    if not leak.exists():
        leak.symlink_to(recordings.parent / "secret.mp4")
    (recordings / "cam-a" / "notes.txt").write_text("not a segment")
    attempts = [
        "/media/recordings/cam-a/%2e%2e%2fsecret.mp4",
        "/media/recordings/cam-a/..%2fsecret.mp4",
        "/media/recordings/cam-a/%2e%2e%2f%2e%2e%2fsecret.mp4",
        "/media/recordings/cam-a/%252e%252e%252fsecret.mp4",
        "/media/recordings/cam-a/..%5csecret.mp4",
        "/media/recordings/cam-a/%2Ftmp%2Fsecret.mp4",
        "/media/recordings/cam-a//etc/passwd",
        "/media/recordings/cam-a/x%00.mp4",
        "/media/recordings/cam-a/leak.mp4",
        "/media/recordings/cam-a/notes.txt",
        "/media/recordings/%2e%2e/secret.mp4",
    ]
    for url in attempts:
        r = client.get(url)
        assert r.status_code in (403, 404), (url, r.status_code)
        assert b"OUTSIDE-THE-TREE" not in r.content, url
        assert "error" in r.json(), url
    assert client.get("/media/recordings/cam-a/leak.mp4").status_code == 403
    assert client.get("/media/recordings/cam-a/%2e%2e%2fsecret.mp4").status_code == 403

    # Raw, un-normalised "../" paths as a server could hand them over (the test client collapses them).
    for path in ("/media/recordings/cam-a/../secret.mp4", "/media/recordings/cam-a/../../secret.mp4"):
        status, content = _raw_get(client, path)
        assert status == 403 and b"OUTSIDE-THE-TREE" not in content, path
    assert client.get("/media/recordings/cam-a/20990101T000000Z_none.mp4").status_code == 404


def test_camera_scope_on_media_and_health(client: TestClient) -> None:
    viewer = Principal(
        id="key_x", name="scoped", role="viewer", kind="api_key",
        capabilities=ROLE_CAPABILITIES["viewer"], camera_scope=frozenset({"cam-live"}),
    )  # fmt: skip
    state = client.app.state.heldar  # type: ignore[attr-defined]
    saved = (state.settings.auth_enabled, state.authenticator)

    async def authenticate(_request: Any) -> Principal:
        return viewer

    state.settings.auth_enabled, state.authenticator = True, authenticate
    try:
        assert client.get(_media(10)).status_code == 403
        assert client.get("/api/v1/cameras/cam-a/segments").status_code == 403
        assert client.get("/api/v1/cameras/nope/gaps").status_code == 403  # scope before lookup
        assert [r["camera_id"] for r in client.get("/api/v1/health/cameras").json()] == ["cam-live"]
        assert client.get("/api/v1/cameras/cam-live/timeline").status_code == 200
    finally:
        state.settings.auth_enabled, state.authenticator = saved


# --- metrics -----------------------------------------------------------------------------------------


def _sample(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} missing"
    return float(match.group(1))


def test_metrics_per_camera_series(client: TestClient, sample_mp4: Path) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert _sample(text, 'heldar_camera_up{camera="cam-a"}') == 1
    assert _sample(text, 'heldar_camera_up{camera="cam-off"}') == 0
    assert _sample(text, 'heldar_camera_up{camera="cam-live"}') == 0
    # the state set: exactly one state is 1 per camera, every other state is there with 0
    for camera, shown in (("cam-a", "recording"), ("cam-off", "disabled"), ("cam-live", "offline")):
        for state in ("unknown", "disabled", "connecting", "recording", "offline", "error"):
            value = _sample(text, f'heldar_camera_state{{camera="{camera}",state="{state}"}}')
            assert value == (1 if state == shown else 0), (camera, state)
    assert _sample(text, 'heldar_camera_reconnects_total{camera="cam-a"}') == 3
    assert _sample(text, 'heldar_camera_segments_written_total{camera="cam-a"}') == 4
    assert _sample(text, 'heldar_camera_stream_bytes_per_second{camera="cam-a"}') == 512.5 * 1000 / 8
    assert 4 <= time.time() - _sample(text, 'heldar_camera_last_segment_timestamp_seconds{camera="cam-a"}') < 120
    assert 4 <= _sample(text, 'heldar_camera_last_segment_age_seconds{camera="cam-a"}') < 120
    assert _sample(text, 'heldar_camera_restarts_total{camera="cam-a",cause="stall"}') == 2
    assert _sample(text, 'heldar_camera_restarts_total{camera="cam-a",cause="crash"}') == 1
    assert 'heldar_camera_stream_bytes_per_second{camera="cam-off"}' not in text  # unknown: no sample
    assert _sample(text, "heldar_cameras_recording") == 1
    assert _sample(text, "heldar_segments") == 5
    assert _sample(text, "heldar_recordings_bytes") == 4 * sample_mp4.stat().st_size + 1000
    helps = re.findall(r"^# HELP (\S+)", text, re.MULTILINE)
    types = re.findall(r"^# TYPE (\S+)", text, re.MULTILINE)
    assert len(helps) == len(set(helps)) and len(types) == len(set(types))


def test_no_secret_in_any_listing(client: TestClient) -> None:
    for url in ("/api/v1/health/cameras", "/metrics", "/api/v1/cameras/cam-a/segments"):
        text = client.get(url).text
        assert CAM_PASSWORD not in text and SIM_PASSWORD not in text
    assert json.loads(client.get("/api/v1/cameras/cam-a/health").text)["last_error"] == "stalled once"
