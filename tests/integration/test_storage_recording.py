"""Storage with real recording cameras: a small cap under a recording camera, the ``retention`` actor healing
itself, and a full disk (a small tmpfs) stopping recording with cause ``disk_full`` until space returns."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.retention import RETENTION_NAME, ensure_retention
from heldar.store.database import create_pool
from heldar.store.recording_reads import window_coverage
from tests.integration.recorder_env import add_camera, db, recorder_env, wait_for
from tests.integration.storage_env import bytes_on_disk

pytestmark = pytest.mark.integration

GB = 1024**3


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from recorder_env(
        new_database(), f"{ray_session}-stor", tmp_path_factory.mktemp("stor"), min_free_disk_gb=0,
    )  # fmt: skip
    with contextlib.suppress(Exception):
        ray.kill(ray.get_actor(RETENTION_NAME, namespace=f"{ray_session}-stor"))


def segments(env: dict[str, Any], camera_id: str) -> list[dict[str, Any]]:
    return db(env, "SELECT * FROM segments WHERE camera_id = $1 ORDER BY start_time", camera_id)


def status(env: dict[str, Any], camera_id: str) -> dict[str, Any]:
    return db(env, "SELECT * FROM camera_status WHERE camera_id = $1", camera_id)[0]


def test_small_cap_with_a_recording_camera(env: dict[str, Any], sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("capped")
    add_camera(env, "capped", sim.url("capped"), segment_seconds=2)
    rows = wait_for(lambda: len(segments(env, "capped")) >= 6 and segments(env, "capped"), 60, "six segments")
    avg = sum(r["size_bytes"] for r in rows) / len(rows)
    cap = int(8 * avg)
    settings = env["settings"].model_copy(update={"max_recordings_gb": cap / GB, "min_free_disk_gb": 0.0})
    handle = ensure_retention(settings, env["url"])
    root = env["settings"].recordings_root
    first_start = rows[0]["start_time"]
    worst_before = worst_after = 0
    last_sweep = time.monotonic()
    written_between = 0
    for _ in range(8):
        time.sleep(3)
        before = bytes_on_disk(root, "capped")
        outcome = ray.get(handle.sweep_now.remote(), timeout=60)
        assert outcome["ok"], outcome
        after = bytes_on_disk(root, "capped")
        elapsed = time.monotonic() - last_sweep
        last_sweep = time.monotonic()
        written_between = max(written_between, int(avg * (elapsed / 2 + 2)))
        worst_before, worst_after = max(worst_before, before), max(worst_after, after)
        indexed = sum(r["size_bytes"] for r in segments(env, "capped"))
        assert indexed <= cap, (indexed, cap)
    # On disk: the cap, plus what one sweep interval writes (and the open segment not yet indexed).
    assert worst_after <= cap + 3 * avg, (worst_after, cap, avg)
    assert worst_before <= cap + written_between + 3 * avg, (worst_before, cap, written_between)
    left = segments(env, "capped")
    deleted = db(env, "SELECT payload FROM events WHERE camera_id = 'capped' AND event_type = 'retention_delete'")
    assert deleted and all(e["payload"]["reason"] == "cap" for e in deleted)
    # Oldest first: everything deleted ended before what is left began.
    newest_deleted = max(datetime.fromisoformat(e["payload"]["newest"]) for e in deleted)
    assert newest_deleted <= left[0]["start_time"] + timedelta(seconds=1.5)
    assert left[0]["start_time"] > first_start

    async def coverage() -> Any:
        pool = await create_pool(env["url"], max_size=1)
        try:
            return await window_coverage(pool, "capped", first_start, datetime.now(UTC))
        finally:
            await pool.close()

    cov = asyncio.run(coverage())
    assert cov.segment_count == len(left)
    assert abs((cov.covered[0].start - left[0]["start_time"]).total_seconds()) < 0.01  # the timeline starts there
    assert status(env, "capped")["state"] == "recording"


def test_retention_actor_is_named_detached_and_heals(env: dict[str, Any]) -> None:
    handle = ensure_retention(env["settings"], env["url"])
    first = ray.get(handle.ping.remote(), timeout=30)
    assert first["ok"] and first["interval_s"] == 300
    same = ray.get_actor(RETENTION_NAME, namespace=env["settings"].ray_namespace)
    assert ray.get(same.ping.remote())["pid"] == first["pid"]
    os.kill(first["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        try:
            report = ray.get(same.ping.remote(), timeout=5)
        except Exception:
            return None
        return report if report["pid"] != first["pid"] else None

    again = wait_for(restarted, 60, "the retention actor to come back")
    assert again["ok"]  # its loop runs again from the constructor, nobody called start()
    assert ray.get(same.sweep_now.remote(), timeout=60)["skipped"] is None


def test_full_disk_stops_recording_with_cause_disk_full_and_it_resumes(env: dict[str, Any], sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    camera_dir: Path = env["settings"].recordings_root / "fullcam"
    camera_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=96m tmpfs '{camera_dir}' 2>/dev/null") != 0:
        pytest.skip("cannot mount a small tmpfs for the camera's folder here (needs root)")
    junk = camera_dir / "filler.bin"
    try:
        sim.add_camera("fullcam")
        add_camera(env, "fullcam", sim.url("fullcam"), segment_seconds=2)
        wait_for(lambda: len(segments(env, "fullcam")) >= 2, 60, "fullcam to record")
        # Another process fills the disk, leaving a few hundred KB.
        free = os.statvfs(camera_dir).f_bavail * os.statvfs(camera_dir).f_frsize
        subprocess.run(["fallocate", "-l", str(free - 300 * 1024), str(junk)], check=True)
        wait_for(lambda: status(env, "fullcam")["last_error_code"] == "disk_full", 60, "cause disk_full")
        st = status(env, "fullcam")
        assert st["state"] in ("error", "offline") and "disk" in st["last_error"]
        assert db(env, "SELECT 1 FROM events WHERE camera_id = 'fullcam' AND event_type = 'disk_full'")
        stopped_at = datetime.now(UTC)
        junk.unlink()  # space returns
        wait_for(lambda: status(env, "fullcam")["state"] == "recording", 60, "recording to resume by itself")
        wait_for(lambda: any(r["start_time"] > stopped_at for r in segments(env, "fullcam")), 60, "new footage after")
    finally:
        with contextlib.suppress(Exception):
            ray.get(env["supervisor"].retire_camera.remote("fullcam"), timeout=60)
        with contextlib.suppress(FileNotFoundError):
            junk.unlink()
        os.system(f"umount -l '{camera_dir}'")


def test_deleting_a_recording_camera_stops_it_and_a_reused_id_starts_empty(env: dict[str, Any], sim) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.supervisor_link import SupervisorLink
    from config import load_settings

    sim.add_camera("reused")
    add_camera(env, "reused", sim.url("reused"), segment_seconds=2)
    old = wait_for(lambda: len(segments(env, "reused")) >= 3 and segments(env, "reused"), 60, "reused to record")
    root = env["settings"].recordings_root
    namespace = env["settings"].ray_namespace
    settings = load_settings(
        auth_enabled=False, data_dir=env["settings"].data_dir, ray_namespace=namespace, webhooks_enabled=False
    )
    with TestClient(create_app(settings, env["url"], supervisor=SupervisorLink(namespace))) as client:
        assert client.delete("/api/v1/cameras/reused").status_code == 204
        with pytest.raises(ValueError):
            ray.get_actor("camera:reused", namespace=namespace)  # stopped before its folder went
        assert not (root / "reused").exists()
        assert db(env, "SELECT 1 FROM segments WHERE camera_id = 'reused'") == []
        recreated_at = datetime.now(UTC)
        body = {"id": "reused", "name": "again", "main_stream_url": sim.url("reused"), "segment_seconds": 2}
        assert client.post("/api/v1/cameras", json=body).status_code == 201
        new = wait_for(lambda: len(segments(env, "reused")) >= 2 and segments(env, "reused"), 60, "new footage")
        assert {r["file_name"] for r in new}.isdisjoint({r["file_name"] for r in old})
        assert all(r["start_time"] >= recreated_at - timedelta(seconds=2) for r in new)
        timeline = client.get(
            "/api/v1/cameras/reused/timeline", params={"from": old[0]["start_time"].isoformat()}
        ).json()
        first_kept = datetime.fromisoformat(timeline["ranges"][0]["start"].replace("Z", "+00:00"))
        assert first_kept >= recreated_at - timedelta(seconds=2)  # nothing of the old camera's footage
        old_file = client.get(f"/media/recordings/reused/{old[0]['file_name']}")
        assert old_file.status_code == 404
        client.delete("/api/v1/cameras/reused")
