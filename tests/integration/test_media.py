"""The media plane over real footage: the recorder's ffmpeg command recorded the RTSP simulator, PostgreSQL holds
the rows. Clip export (ffmpeg stream copy, decoded end to end by PyAV; clips expire through the retention sweep),
snapshots of a recorded instant and live grabs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from config import load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.media import jobs
from heldar.media.segment_names import segment_path
from heldar.storage.sweeper import RetentionSweeper, SweepConfig
from heldar.store.database import create_pool
from tests.integration.media_env import Footage, index_footage, record_footage
from tests.integration.storage_env import add_camera

pytestmark = pytest.mark.integration

GOP_S = 1.0  # the simulator's GOP (15 fps, keyframe every 15 frames)


@pytest.fixture(scope="module")
def sim() -> Iterator[FakeCamSimThread]:
    with FakeCamSimThread(host="127.0.0.1", port=0) as runner:
        runner.add_camera("clipcam")
        yield runner


@pytest.fixture(scope="module")
def footage(sim: FakeCamSimThread, tmp_path_factory: pytest.TempPathFactory) -> list[Footage]:
    recorded = record_footage(sim.url("clipcam"), tmp_path_factory.mktemp("rec") / "clipcam", seconds=13.0)
    assert len(recorded) >= 5, recorded
    return recorded


def _run(url: str, job: Any) -> Any:
    async def main() -> Any:
        pool = await create_pool(url, max_size=4)
        try:
            return await job(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


@pytest.fixture()
def env(new_database, tmp_path: Path, footage: list[Footage], sim: FakeCamSimThread) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = load_settings(data_dir=tmp_path, auth_enabled=False, webhooks_enabled=False)

    async def seed(pool: Any) -> list[dict[str, Any]]:
        await add_camera(pool, "cam1", main_stream_url=sim.url("clipcam"))
        return await index_footage(pool, settings.recordings_root, "cam1", footage)

    rows = _run(url, seed)
    with TestClient(create_app(settings, url)) as client:
        yield {"client": client, "settings": settings, "rows": rows, "url": url}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _decode(path: Path) -> tuple[int, float, float]:
    """(frames decoded, first pts s, last pts s) of the video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [float(f.pts * f.time_base) for f in container.decode(stream) if f.pts is not None]
    return len(pts), min(pts), max(pts)


def test_clip_with_a_gap_decodes_and_lists_the_gap(env: dict[str, Any]) -> None:
    client, settings, rows = env["client"], env["settings"], env["rows"]
    hole = rows[2]

    async def drop(pool: Any) -> None:  # a lost segment: row and file gone
        await pool.execute("DELETE FROM segments WHERE id = $1", hole["id"])

    _run(env["url"], drop)
    segment_path(settings.recordings_root / "cam1", hole["file_name"]).unlink()
    start = rows[0]["start_time"] + timedelta(seconds=0.5)
    end = rows[-1]["end_time"] - timedelta(seconds=0.5)
    r = client.post("/api/v1/cameras/cam1/clip", json={"from": _iso(start), "to": _iso(end)})
    assert r.status_code == 201, r.text
    clip = r.json()
    assert clip["segment_count"] == len(rows) - 1
    assert clip["requested_seconds"] == pytest.approx((end - start).total_seconds(), abs=0.01)
    assert len(clip["gaps"]) == 1
    gap = clip["gaps"][0]
    assert datetime.fromisoformat(gap["from"]) == hole["start_time"]
    assert datetime.fromisoformat(gap["to"]) == hole["end_time"]
    hole_s = (hole["end_time"] - hole["start_time"]).total_seconds()
    assert clip["covered_seconds"] == pytest.approx(clip["requested_seconds"] - hole_s, abs=0.01)

    download = client.get(clip["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert len(download.content) == clip["size_bytes"]
    local = settings.clips_root / "cam1" / clip["filename"]
    assert local.read_bytes()[4:8] == b"ftyp" and local.read_bytes().find(b"moov") < local.read_bytes().find(b"mdat")
    frames, first, last = _decode(local)
    duration = last - first + 1 / 15
    print(f"clip: covered {clip['covered_seconds']} s, decoded {frames} frames, {duration:.3f} s")
    assert abs(duration - clip["covered_seconds"]) <= GOP_S + 1 / 15
    assert frames == pytest.approx(duration * 15, abs=2)


def test_clip_errors(env: dict[str, Any]) -> None:
    client, rows = env["client"], env["rows"]
    t0 = rows[0]["start_time"]
    post = client.post
    assert post("/api/v1/cameras/cam1/clip", json={"from": _iso(t0), "to": _iso(t0)}).status_code == 400
    long = {"from": _iso(t0), "to": _iso(t0 + timedelta(seconds=3601))}
    assert post("/api/v1/cameras/cam1/clip", json=long).status_code == 400
    assert post("/api/v1/cameras/cam1/clip", json={"from": "yesterday", "to": _iso(t0)}).status_code == 400
    empty = {"from": _iso(t0 - timedelta(hours=2)), "to": _iso(t0 - timedelta(hours=1))}
    assert post("/api/v1/cameras/cam1/clip", json=empty).status_code == 404
    assert post("/api/v1/cameras/nocam/clip", json=empty).status_code == 404
    assert client.get("/media/clips/cam1/clip_cam1_x.mp4").status_code == 404
    assert client.get("/media/clips/cam1/..%2Fx.mp4").status_code in (403, 404)


def test_no_slot_within_the_wait_is_503(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    client, rows = env["client"], env["rows"]
    monkeypatch.setattr(jobs, "SLOT_WAIT_S", 0.2)
    slots = jobs.MediaJobSlots(1)
    client.app.state.heldar.extras["media_slots"] = slots  # type: ignore[attr-defined]
    assert slots._sem.locked() is False
    asyncio.run(slots._sem.acquire())  # no wait: binds no loop
    window = {"from": _iso(rows[0]["start_time"]), "to": _iso(rows[1]["end_time"])}
    r = client.post("/api/v1/cameras/cam1/clip", json=window)
    assert r.status_code == 503 and r.headers["retry-after"]
    slots._sem.release()
    assert client.post("/api/v1/cameras/cam1/clip", json=window).status_code == 201


def test_clips_expire_through_the_retention_sweep(env: dict[str, Any]) -> None:
    client, settings, rows = env["client"], env["settings"], env["rows"]
    window = {"from": _iso(rows[0]["start_time"]), "to": _iso(rows[1]["end_time"])}
    clip = client.post("/api/v1/cameras/cam1/clip", json=window).json()
    local = settings.clips_root / "cam1" / clip["filename"]
    assert local.is_file()
    config = SweepConfig(recordings_root=settings.recordings_root, clips_root=settings.clips_root)

    async def sweep(pool: Any, hours: float) -> dict[str, Any]:
        sweeper = RetentionSweeper(pool, config, "test")
        return await sweeper.sweep(orphans=False, now=datetime.now(UTC) + timedelta(hours=hours))

    kept = _run(env["url"], lambda pool: sweep(pool, 47))
    assert kept["rows"].get("clips") == 0 and local.is_file()
    assert client.get(clip["url"]).status_code == 200
    gone = _run(env["url"], lambda pool: sweep(pool, 49))
    assert gone["rows"]["clips"] == 1 and not local.exists()
    assert client.get(clip["url"]).status_code == 404


# --- snapshots ---------------------------------------------------------------------------------------------------


def _image(data: bytes) -> Any:
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a decodable JPEG"
    return img


def _frames(path: Path) -> list[tuple[float, Any]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(f.pts * f.time_base), f.to_ndarray(format="bgr24")) for f in container.decode(stream)]


def test_snapshot_of_a_recorded_instant_shows_that_instant(env: dict[str, Any]) -> None:
    import numpy as np

    from heldar.media.snapshots import frame_at

    client, settings, rows = env["client"], env["settings"], env["rows"]
    seg = rows[1]
    path = segment_path(settings.recordings_root / "cam1", seg["file_name"])
    offset = 1.3
    r = client.get("/api/v1/cameras/cam1/snapshot", params={"at": _iso(seg["start_time"] + timedelta(seconds=offset))})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store"
    shot = _image(r.content).astype(np.int16)
    assert shot.shape == (360, 640, 3)
    frames = _frames(path)
    first = frames[0][0]
    on_screen = max((f for f in frames if f[0] - first <= offset + 1e-3), key=lambda f: f[0])
    elsewhere = min(frames, key=lambda f: abs(f[0] - first - (offset - 0.6)))
    same = float(np.abs(shot - on_screen[1].astype(np.int16)).mean())
    other = float(np.abs(shot - elsewhere[1].astype(np.int16)).mean())
    print(f"snapshot: mean abs diff {same:.2f} to the frame at {offset} s, {other:.2f} to one 0.6 s earlier")
    assert same < 5.0 and same * 3 < other
    _, t, decoded = frame_at(path, offset)
    assert t == pytest.approx(on_screen[0] - first, abs=1e-3)
    assert decoded <= 15 + 1, "more than the one GOP holding the instant was decoded"


def test_snapshot_errors_and_live_grab(env: dict[str, Any], sim: FakeCamSimThread) -> None:
    client, rows = env["client"], env["rows"]
    before = rows[0]["start_time"] - timedelta(hours=1)
    assert client.get("/api/v1/cameras/cam1/snapshot", params={"at": _iso(before)}).status_code == 404
    assert client.get("/api/v1/cameras/cam1/snapshot", params={"at": "noon"}).status_code == 400
    r = client.get("/api/v1/cameras/cam1/snapshot")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert _image(r.content).shape == (360, 640, 3)


# --- playback ----------------------------------------------------------------------------------------------------


@pytest.fixture()
def served(env: dict[str, Any]) -> Iterator[str]:
    """A second app on the same database and folders, on a real socket (ffmpeg fetches the playlist over HTTP)."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(env["settings"], env["url"]), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def _ffmpeg_frames(url: str) -> tuple[int, str]:
    import re
    import subprocess

    from heldar.media.binary import ffmpeg_exe

    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "info", "-i", url, "-map", "0:v", "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.findall(r"frame=\s*(\d+)", proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return (int(found[-1]) if found else 0), proc.stderr


def test_a_session_starting_inside_a_file_serves_every_part_it_names(env: dict[str, Any]) -> None:
    """The first file's parts sit before the session's zero (a negative ``o``): they are served, not 404."""
    client, rows = env["client"], env["rows"]
    start = rows[1]["start_time"] + timedelta(seconds=float(rows[1]["duration_s"]) * 0.8)
    r = client.post(
        "/api/v1/cameras/cam1/playback/sessions", json={"from": _iso(start), "to": _iso(rows[3]["end_time"])}
    )
    assert r.status_code == 201, r.text
    session = r.json()
    base = session["playlist_url"].split("index.m3u8")[0]
    text = client.get(session["playlist_url"]).text
    parts = [line for line in text.splitlines() if line and not line.startswith("#")]
    maps = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
    assert parts and "o=-" in parts[0], text  # the case at hand: the first part starts inside its file
    for uri in maps + parts:
        got = client.get(base + uri)
        assert got.status_code == 200, (uri, got.status_code, got.text)
    assert client.delete(f"/api/v1/playback/sessions/{session['id']}").status_code == 204


def test_playback_playlist_plays_through_and_holds_its_segments(env: dict[str, Any], served: str) -> None:
    client, settings, rows = env["client"], env["settings"], env["rows"]
    hole = rows[2]

    async def prepare(pool: Any) -> None:  # a gap, and footage old enough (2 h) for a 1 h retention to take
        await pool.execute("DELETE FROM segments WHERE id = $1", hole["id"])
        await pool.execute("UPDATE cameras SET retention_hours = 1 WHERE id = 'cam1'")
        await pool.execute(
            "UPDATE segments SET start_time = start_time - interval '2 hours', end_time = end_time - interval '2 hours'"
        )

    _run(env["url"], prepare)
    back = timedelta(hours=2)
    start, end = rows[0]["start_time"] - back, rows[-2]["end_time"] - back - timedelta(seconds=0.5)
    r = client.post("/api/v1/cameras/cam1/playback/sessions", json={"from": _iso(start), "to": _iso(end)})
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["segment_count"] == len(rows) - 2 and len(session["gaps"]) == 1
    text = client.get(session["playlist_url"]).text
    assert text.startswith("#EXTM3U") and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert text.count("#EXT-X-MAP:") == session["segment_count"]
    assert text.count("#EXT-X-DISCONTINUITY") == 1  # the gap, nowhere else
    assert text.count("#EXTINF:") == session["part_count"] >= session["segment_count"] * 2
    # A token for another session, or none at all on a credential-less player, is refused.
    bad = session["playlist_url"].replace(session["playlist_url"].split("token=")[1], "nope")
    assert client.get(bad).status_code == 401

    frames, log = _ffmpeg_frames(served + session["playlist_url"])
    assert "non monotonically increasing" not in log
    expected = (sum(float(r["duration_s"]) for r in rows[:-1] if r is not hole) - 0.5) * 15
    print(f"playback: ffmpeg decoded {frames} frames of ~{expected:.0f}, {session['part_count']} parts")
    assert frames == pytest.approx(expected, abs=15)  # the last cut lands on a fragment (GOP) boundary

    config = SweepConfig(recordings_root=settings.recordings_root, clips_root=settings.clips_root)

    async def sweep(pool: Any) -> set[str]:
        await RetentionSweeper(pool, config, "test").sweep(orphans=False)
        return {r["id"] for r in await pool.fetch("SELECT id FROM segments WHERE camera_id = 'cam1'")}

    held = {r["id"] for r in rows[:-1] if r is not hole}
    assert _run(env["url"], sweep) == held  # the last segment (outside the window) went, the session's stayed
    assert client.delete(f"/api/v1/playback/sessions/{session['id']}").status_code == 204
    assert client.get(session["playlist_url"]).status_code == 401
    assert _run(env["url"], sweep) == set()
    assert client.delete(f"/api/v1/playback/sessions/{session['id']}").status_code == 404


def test_playback_errors(env: dict[str, Any]) -> None:
    client, rows = env["client"], env["rows"]
    t0 = rows[0]["start_time"]
    path = "/api/v1/cameras/cam1/playback/sessions"
    assert client.post(path, json={"from": _iso(t0), "to": _iso(t0)}).status_code == 400
    assert client.post(path, json={"from": _iso(t0), "to": _iso(t0 + timedelta(days=1))}).status_code == 400
    empty = {"from": _iso(t0 - timedelta(hours=2)), "to": _iso(t0 - timedelta(hours=1))}
    assert client.post(path, json=empty).status_code == 404
    assert client.get("/media/playback/pbsnothere/index.m3u8").status_code == 404
    assert client.delete("/api/v1/playback/sessions/other").status_code == 400


# --- integrity ---------------------------------------------------------------------------------------------------


def test_integrity_reports_a_changed_inserted_or_deleted_segment_where_it_is(env: dict[str, Any]) -> None:
    import shutil

    client, settings, rows = env["client"], env["settings"], env["rows"]
    window = {"from": _iso(rows[0]["start_time"]), "to": _iso(rows[-1]["end_time"])}

    def check() -> dict[str, Any]:
        r = client.get("/api/v1/cameras/cam1/integrity", params=window)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    report = check()
    assert report["ok"] and report["verified"] == len(rows) and report["first_break"] is None
    assert (report["chain_from"], report["chain_to"]) == (1, len(rows))

    # One byte flipped in the middle of a file.
    victim = segment_path(settings.recordings_root / "cam1", rows[3]["file_name"])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    broken = check()
    assert not broken["ok"] and broken["first_break"]["kind"] == "changed"
    assert broken["first_break"]["segment_id"] == rows[3]["id"]
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    assert check()["ok"]

    # A segment slipped in (file and row) that no indexer chained.
    forged_start = rows[2]["start_time"] + timedelta(seconds=0.5)
    forged_name = rows[2]["file_name"].replace("_t1", "_zz9")
    shutil.copyfile(segment_path(settings.recordings_root / "cam1", rows[2]["file_name"]),
                    segment_path(settings.recordings_root / "cam1", forged_name))  # fmt: skip

    async def forge(pool: Any) -> None:
        await pool.execute(
            "INSERT INTO segments (id, camera_id, file_name, start_time, end_time, duration_s, size_bytes)"
            " VALUES ('seg_forged', 'cam1', $1, $2, $3, 1.0, 1)",
            forged_name, forged_start, forged_start + timedelta(seconds=1),
        )  # fmt: skip

    _run(env["url"], forge)
    broken = check()
    assert broken["first_break"]["kind"] == "inserted" and broken["first_break"]["segment_id"] == "seg_forged"
    _run(env["url"], lambda pool: pool.execute("DELETE FROM segments WHERE id = 'seg_forged'"))
    assert check()["ok"]

    # A segment deleted (row and file): the chain has a hole exactly where it was.
    seqs = _run(env["url"], lambda pool: pool.fetch("SELECT id, chain_seq FROM segments WHERE camera_id = 'cam1'"))
    seq_of = {r["id"]: r["chain_seq"] for r in seqs}
    gone = next(r for r in rows if seq_of[r["id"]] == 3)
    _run(env["url"], lambda pool: pool.execute("DELETE FROM segments WHERE id = $1", gone["id"]))
    segment_path(settings.recordings_root / "cam1", gone["file_name"]).unlink()
    broken = check()
    assert broken["first_break"]["kind"] == "missing" and broken["first_break"]["chain_seq"] == 3


def test_the_writers_batch_persists_the_hash_and_back_fill_joins_the_chain(
    new_database, tmp_path: Path, footage: list[Footage]
) -> None:  # type: ignore[no-untyped-def]
    """The indexer's record (with the file's SHA-256) through the writer's store call, then the chain pass: a
    back-fill that arrives after later live footage is appended, marked, and the window still verifies."""
    from heldar.media.integrity import file_sha256, link_pending, verify_window
    from heldar.recording.records import RecordingBatch, SegmentRecord
    from heldar.store.recording import apply_recording_batch

    url = new_database()
    root = tmp_path / "recordings"
    live, late = footage[1:4], footage[0]

    def record(f: Footage, source: str, start: datetime) -> SegmentRecord:
        dest = segment_path(root / "cam1", f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.path.read_bytes())
        return SegmentRecord(file_name=f.name, start=start, end=start + timedelta(seconds=f.duration_s),
                             duration_s=f.duration_s, size_bytes=f.size_bytes, codec=f.codec, source=source,
                             sha256=file_sha256(dest))  # fmt: skip

    async def job(pool: Any) -> dict[str, Any]:
        await add_camera(pool, "cam1")
        batch = RecordingBatch("cam1", [record(f, "live", f.start) for f in live])
        await apply_recording_batch(pool, batch, gap_threshold_s=3)
        assert await link_pending(pool, "cam1") == 3
        await apply_recording_batch(
            pool, RecordingBatch("cam1", [record(late, "backfill", late.start)]), gap_threshold_s=3
        )
        assert await link_pending(pool, "cam1") == 1
        chain = await pool.fetch("SELECT file_name, source, chain_seq, sha256 FROM segments ORDER BY chain_seq")
        assert [r["file_name"] for r in chain] == [f.name for f in live] + [late.name]
        assert chain[-1]["source"] == "backfill" and all(r["sha256"] for r in chain)
        return await verify_window(pool, root, "cam1", late.start, live[-1].start + timedelta(seconds=10))

    report = _run(url, job)
    assert report["ok"] and report["verified"] == 4, report


def test_a_clip_manifest_verifies_offline_and_fails_after_a_byte_changes(env: dict[str, Any], tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    client, rows = env["client"], env["rows"]
    window = {"from": _iso(rows[1]["start_time"]), "to": _iso(rows[3]["end_time"])}
    clip = client.post("/api/v1/cameras/cam1/clip", json=window).json()
    key = client.get("/api/v1/system/signing-key").json()
    assert key["algorithm"] == "Ed25519" and len(key["public_key"]) == 64
    offline = tmp_path / "offline"
    offline.mkdir()
    clip_file, manifest_file = offline / clip["filename"], offline / (clip["filename"] + ".manifest.json")
    clip_file.write_bytes(client.get(clip["url"]).content)
    manifest_r = client.get(clip["manifest_url"])
    assert manifest_r.status_code == 200
    manifest_file.write_bytes(manifest_r.content)
    manifest = json.loads(manifest_r.content)
    assert [s["id"] for s in manifest["segments"]] == [r["id"] for r in rows[1:4]]
    assert all(s["sha256"] and s["chain_hash"] and s["chain_prev"] for s in manifest["segments"])

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        env_vars = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        return subprocess.run(
            [sys.executable, "-m", "api.cli", "verify", str(clip_file), str(manifest_file), *extra],
            capture_output=True, text=True, timeout=60, env=env_vars,
        )  # fmt: skip

    ok = verify("--public-key", key["public_key"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK ")
    data = bytearray(clip_file.read_bytes())
    data[len(data) // 3] ^= 0x40
    clip_file.write_bytes(bytes(data))
    bad = verify("--public-key", key["public_key"])
    assert bad.returncode == 1 and "the clip was changed" in bad.stdout
    data[len(data) // 3] ^= 0x40
    clip_file.write_bytes(bytes(data))
    manifest["segments"][0]["sha256"] = "0" * 64  # a source hash rewritten: the signature no longer holds
    manifest_file.write_text(json.dumps(manifest))
    forged = verify()
    assert forged.returncode == 1 and "signature does not verify" in forged.stdout


# --- live view ---------------------------------------------------------------------------------------------------


def test_live_view_is_a_second_output_of_the_recorders_stream_copy(
    new_database, tmp_path: Path, sim: FakeCamSimThread
) -> None:  # type: ignore[no-untyped-def]
    import re
    import signal
    import subprocess
    import time

    from heldar.media.binary import ffmpeg_exe
    from heldar.media.recorder_command import RecorderSpec, build_recorder_argv, recorder_env
    from heldar.media.segment_names import ensure_day_dirs, list_segment_files

    settings = load_settings(data_dir=tmp_path, auth_enabled=False, webhooks_enabled=False, live_view_enabled=True)
    camera_dir, live_dir = settings.recordings_root / "cam1", settings.live_root / "cam1"
    live_dir.mkdir(parents=True)
    ensure_day_dirs(camera_dir, datetime.now(UTC))
    spec = RecorderSpec(input_url=sim.url("clipcam"), camera_dir=camera_dir, run_id="lv1", segment_seconds=2,
                        live_dir=live_dir)  # fmt: skip
    before = sim.session_count("clipcam")
    proc = subprocess.Popen(build_recorder_argv(spec, ffmpeg_exe()), env=recorder_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = new_database()
    _run(url, lambda pool: add_camera(pool, "cam1", main_stream_url=sim.url("clipcam")))
    try:
        playlist = live_dir / "index.m3u8"

        def sequence() -> int:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if playlist.exists():
                    found = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist.read_text())
                    parts = re.findall(r"^p\d+\.ts$", playlist.read_text(), re.M)
                    if found and parts:
                        return int(found.group(1)) + len(parts)
                time.sleep(0.2)
            raise AssertionError("no live playlist")

        first = sequence()
        time.sleep(3.5)
        later = sequence()
        assert later >= first + 2, (first, later)  # about one part per GOP (1 s)
        assert sim.session_count("clipcam") == before + 1  # the recorder's session only: nothing else opened
        with TestClient(create_app(settings, url)) as client:
            view = client.get("/api/v1/cameras/cam1/liveview")
            assert view.status_code == 200, view.text
            assert view.json()["live"] is True
            text = client.get(view.json()["hls_url"]).text
            assert text.startswith("#EXTM3U")
            part = re.findall(r"^p\d+\.ts$", text, re.M)[-1]
            r = client.get(f"/media/live/cam1/{part}")
            assert r.status_code == 200 and r.content[:1] == b"\x47"  # MPEG-TS sync byte
            assert client.get("/api/v1/cameras/cam1/liveview").json()["viewers"] == 1
            assert client.get("/media/live/cam1/..%2Fx").status_code in (403, 404)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    segments = list_segment_files(camera_dir)
    assert len(segments) >= 2  # the recording itself went on as without live view
    from heldar.media.hls import fmp4_layout

    assert len(fmp4_layout(segments[0].path).fragments) >= 1  # still fragmented MP4, as without live view
    deadline = time.monotonic() + 5
    while sim.session_count("clipcam") != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sim.session_count("clipcam") == before


def test_a_failing_live_output_does_not_stop_the_recording(tmp_path: Path, sim: FakeCamSimThread) -> None:
    import signal
    import subprocess
    import time

    from heldar.media.binary import ffmpeg_exe
    from heldar.media.recorder_command import RecorderSpec, build_recorder_argv, recorder_env
    from heldar.media.segment_names import ensure_day_dirs, list_segment_files

    camera_dir = tmp_path / "rec" / "cam1"
    ensure_day_dirs(camera_dir, datetime.now(UTC))
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the live folder should be")
    spec = RecorderSpec(input_url=sim.url("clipcam"), camera_dir=camera_dir, run_id="lv2", segment_seconds=2,
                        live_dir=blocked / "cam1")  # fmt: skip
    proc = subprocess.Popen(build_recorder_argv(spec, ffmpeg_exe()), env=recorder_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(6.5)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert len(list_segment_files(camera_dir)) >= 3


def test_playback_is_served_to_its_owner_or_the_token_only(
    new_database, tmp_path: Path, footage: list[Footage]
) -> None:  # type: ignore[no-untyped-def]
    from api.auth_wiring import bootstrap_admin

    url = new_database()
    settings = load_settings(
        data_dir=tmp_path, webhooks_enabled=False, auth_enabled=True, bootstrap_admin_user="media-admin",
        bootstrap_admin_password="Media-Admin-Pw1", password_hash_time_cost=1, password_hash_memory_kib=8,
        password_hash_parallelism=1,
    )  # fmt: skip
    asyncio.run(bootstrap_admin(settings, url))

    async def seed(pool: Any) -> list[dict[str, Any]]:
        await add_camera(pool, "cam1")
        return await index_footage(pool, settings.recordings_root, "cam1", footage[:3])

    rows = _run(url, seed)
    with TestClient(create_app(settings, url)) as client:
        login = client.post("/api/v1/auth/login", json={"username": "media-admin", "password": "Media-Admin-Pw1"})
        admin = {"Authorization": f"Bearer {login.json()['token']}"}
        client.cookies.clear()
        keys = []
        for name in ("alice", "bob"):
            r = client.post("/api/v1/api-keys", json={"name": name, "role": "viewer"}, headers=admin)
            assert r.status_code == 201, r.text
            keys.append({"X-API-Key": r.json()["key"]})
        alice, bob = keys
        window = {"from": _iso(rows[0]["start_time"]), "to": _iso(rows[-1]["end_time"])}
        session = client.post("/api/v1/cameras/cam1/playback/sessions", json=window, headers=alice).json()
        bare = session["playlist_url"].split("?")[0]
        assert client.get(bare, headers=alice).status_code == 200  # the owner, by credential
        assert client.get(bare, headers=bob).status_code == 404  # another viewer: no such session
        assert client.get(bare).status_code == 401  # nobody
        tokened = client.get(session["playlist_url"])  # a player with the token and no headers
        assert tokened.status_code == 200
        part = next(line for line in tokened.text.splitlines() if ".m4s?" in line)
        assert client.get(bare.rsplit("/", 1)[0] + "/" + part).status_code == 200
        assert client.delete(f"/api/v1/playback/sessions/{session['id']}", headers=bob).status_code == 404
        assert client.delete(f"/api/v1/playback/sessions/{session['id']}", headers=alice).status_code == 204
        assert client.get(session["playlist_url"]).status_code == 401
