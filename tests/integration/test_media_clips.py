"""Clip export over real footage: the recorder's ffmpeg command recorded the RTSP simulator; PostgreSQL holds the
rows; ffmpeg stream-copies the clip; PyAV decodes it end to end. Clips expire through the retention sweep."""

from __future__ import annotations

import asyncio
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
def footage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Footage]]:
    with FakeCamSimThread(host="127.0.0.1", port=0) as sim:
        url = sim.add_camera("clipcam")
        recorded = record_footage(url, tmp_path_factory.mktemp("rec") / "clipcam", seconds=13.0)
    assert len(recorded) >= 5, recorded
    yield recorded


def _run(url: str, job: Any) -> Any:
    async def main() -> Any:
        pool = await create_pool(url, max_size=4)
        try:
            return await job(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


@pytest.fixture()
def env(new_database, tmp_path: Path, footage: list[Footage]) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = load_settings(data_dir=tmp_path, auth_enabled=False, webhooks_enabled=False)

    async def seed(pool: Any) -> list[dict[str, Any]]:
        await add_camera(pool, "cam1")
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
