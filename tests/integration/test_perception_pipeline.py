"""Perception end to end on real parts: simulator (moving scene) → SamplerActor (PyAV) → DetectorWorker
(MOG2, HOG) → ingest actor → detection rows in PostgreSQL; and a slow worker that causes drops, not
growing memory, while the camera keeps recording."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.handles import ensure_supervisor
from actors.sampler import get_sampler
from config import load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.fakecam.scene import SceneSource
from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.store import cameras as camera_store
from heldar.store import perception as perception_store
from heldar.store.database import create_pool
from tests.integration.test_recording import db, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCamSimThread]:
    source = SceneSource(cache_dir=str(tmp_path_factory.mktemp("scene")))
    with FakeCamSimThread(source=source) as s:
        yield s


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    url = new_database()
    settings = load_settings(
        ray_namespace=f"{ray_session}-perc", data_dir=tmp_path_factory.mktemp("perc"), indexer_interval_s=1,
        rtsp_timeout_s=4, ai_detector_workers=2, ai_max_in_flight=1, ai_max_pending=1, ai_max_total_fps=40,
    )  # fmt: skip
    supervisor = ensure_supervisor(settings, url)
    yield {"url": url, "settings": settings, "supervisor": supervisor}
    ray.get(supervisor.shutdown.remote(), timeout=60)
    ray.kill(supervisor)


def add_camera(env: dict[str, Any], camera_id: str, url: str, tasks: list[dict[str, Any]], record: bool) -> None:
    body = CameraCreate(id=camera_id, name=camera_id, main_stream_url=url, segment_seconds=2, record_enabled=record)

    async def run() -> None:
        pool = await create_pool(env["url"], max_size=2)
        try:
            await camera_store.insert_camera(pool, Camera.from_create(body, RecordingDefaults()))
            for task in tasks:
                values = {"stream_profile": "main", "width": 640, "config": {}, **task}
                await perception_store.create_task(pool, camera_id, values)
        finally:
            await pool.close()

    asyncio.run(run())
    ray.get(env["supervisor"].reconcile.remote(camera_id))
    ray.get(env["supervisor"].reconcile_perception.remote())


def sampler_stats(env: dict[str, Any], camera_id: str) -> dict[str, Any]:
    handle = wait_for(lambda: get_sampler(env["settings"].ray_namespace, camera_id, "main"), 30, "sampler actor")
    return ray.get(handle.stats.remote(), timeout=10)  # type: ignore[no-any-return]


def test_scene_to_detection_rows_with_motion_and_person(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("walk-cam")
    add_camera(env, "walk-cam", sim.url("walk-cam"),
               [{"task_type": "motion", "fps": 4}, {"task_type": "person", "fps": 2}], record=False)  # fmt: skip
    wait_for(lambda: sampler_stats(env, "walk-cam")["state"] == "sampling", 30, "sampling")
    rows = wait_for(
        lambda: (r := db(env, "SELECT * FROM detections WHERE camera_id = 'walk-cam'"))
        and {x["label"] for x in r} >= {"motion", "person"} and r,
        40, "motion and person detections",
    )  # fmt: skip
    person = [r for r in rows if r["label"] == "person"]
    assert all(0 <= v <= 1 for r in rows for v in r["bbox"]) and all(r["track_id"] for r in rows)
    assert person[0]["confidence"] > 0.3 and person[0]["bbox"][3] > 0.3  # a standing figure, half the frame
    assert all(r["frame_id"].startswith("k:sampler:ai_") for r in rows)
    assert {r["attributes"]["source"] for r in rows} == {"kernel"}
    # the sampler decodes at its granted fps (max of its tasks: 4) within 5 %
    time.sleep(10.5)
    stats = sampler_stats(env, "walk-cam")
    assert stats["fps"] == 4 and abs(stats["fps_actual"] - 4) <= 0.2, stats
    outbox = db(env, "SELECT count(*) AS n, count(fanned_out_at) AS f FROM outbox WHERE camera_id = 'walk-cam'")[0]
    assert outbox["n"] > 0
    grants = ray.get(env["supervisor"].sampler_grants.remote())
    assert {"camera_id": "walk-cam", "stream_profile": "main", "fps": 4.0, "width": 640, "state": "granted"} in grants


def test_slow_worker_drops_frames_memory_flat_recording_continues(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("lagcam")
    add_camera(env, "lagcam", sim.url("lagcam"),
               [{"task_type": "delay", "fps": 10, "config": {"delay_s": 0.5}}], record=True)  # fmt: skip
    wait_for(lambda: sampler_stats(env, "lagcam")["frames_dropped"] > 5, 40, "drops")
    first = sampler_stats(env, "lagcam")
    segments_before = db(env, "SELECT count(*) AS n FROM segments WHERE camera_id = 'lagcam'")[0]["n"]
    time.sleep(8)
    later = sampler_stats(env, "lagcam")
    dropped = later["frames_dropped"] - first["frames_dropped"]
    analysed = later["results"] - first["results"]
    assert dropped > 3 * analysed > 0, (first, later)  # ~10 fps in, ~2 fps analysed
    assert later["in_flight"] <= 1 and later["pending"] <= 1
    assert later["rss_bytes"] - first["rss_bytes"] < 30 * 2**20, (first["rss_bytes"], later["rss_bytes"])
    segments_after = db(env, "SELECT count(*) AS n FROM segments WHERE camera_id = 'lagcam'")[0]["n"]
    assert segments_after >= segments_before + 2, (segments_before, segments_after)  # recording is untouched
    status = db(env, "SELECT state FROM camera_status WHERE camera_id = 'lagcam'")[0]
    assert status["state"] == "recording"


def test_sampler_going_offline_is_an_event(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("fadecam")
    add_camera(env, "fadecam", sim.url("fadecam"), [{"task_type": "motion", "fps": 2}], record=False)
    wait_for(lambda: sampler_stats(env, "fadecam")["state"] == "sampling", 40, "sampling")
    ray.get(env["supervisor"].reconcile_perception.remote())  # remembers the sampler as sampling
    before = sampler_stats(env, "fadecam")["reconnects"]
    sim.set_fault("fadecam", "down")
    try:
        wait_for(lambda: sampler_stats(env, "fadecam")["reconnects"] > before, 30, "the sampler to see the outage")
        ray.get(env["supervisor"].reconcile_perception.remote())
        rows = db(env, "SELECT payload FROM events WHERE camera_id = 'fadecam' AND event_type = 'sampler_offline'")
        assert len(rows) == 1 and rows[0]["payload"]["stream_profile"] == "main"
        ray.get(env["supervisor"].reconcile_perception.remote())  # still offline: no second event
        assert len(db(env, "SELECT 1 FROM events WHERE camera_id = 'fadecam' AND event_type = 'sampler_offline'")) == 1
    finally:
        sim.set_fault("fadecam", "resume")
