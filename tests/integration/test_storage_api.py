"""Storage routes over real PostgreSQL and real files: evidence locks, incidents, /system, retention overrides,
camera delete purging footage, and a hand-deleted file noticed on read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth_wiring import bootstrap_admin
from config import load_settings
from heldar.storage.sweeper import RetentionSweeper, SweepConfig
from heldar.store.database import create_pool
from tests.integration.sql import sql
from tests.integration.storage_env import add_camera, add_segments, file_of, files_on_disk

pytestmark = pytest.mark.integration

ADMIN, PASSWORD = "store-admin", "Store-Admin-Pw1"
KB = 1024


def seed(url: str, root: Path, camera_id: str, count: int, step_s: float = 2.0, **camera: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        pool = await create_pool(url, max_size=2)
        try:
            if not await pool.fetchval("SELECT 1 FROM cameras WHERE id = $1", camera_id):
                await add_camera(pool, camera_id, **camera)
            return await add_segments(
                pool, root, camera_id, count, size=KB, step_s=step_s, start=datetime.now(UTC) - timedelta(minutes=10)
            )
        finally:
            await pool.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    data = tmp_path_factory.mktemp("storage-api")
    settings = load_settings(
        data_dir=data, auth_enabled=True, bootstrap_admin_user=ADMIN, bootstrap_admin_password=PASSWORD,
        password_hash_time_cost=1, password_hash_memory_kib=8, password_hash_parallelism=1,
    )  # fmt: skip
    asyncio.run(bootstrap_admin(settings, url))
    with TestClient(create_app(settings, url)) as client:
        r = client.post("/api/v1/auth/login", json={"username": ADMIN, "password": PASSWORD})
        admin = {"Authorization": f"Bearer {r.json()['token']}"}
        client.cookies.clear()
        keys = {}
        for role in ("manager", "viewer"):
            minted = client.post(
                "/api/v1/api-keys", json={"name": role, "role": role, "confirm_privileged": True}, headers=admin
            )
            assert minted.status_code == 201, minted.text
            keys[role] = {"X-API-Key": minted.json()["key"]}
        yield {"url": url, "client": client, "admin": admin, "root": settings.recordings_root, **keys}


def test_evidence_lock_incident_routes_and_audit(env: dict[str, Any]) -> None:
    client, manager, viewer = env["client"], env["manager"], env["viewer"]
    rows = seed(env["url"], env["root"], "ev-cam", 4)
    seg = rows[1]["id"]
    assert client.post(f"/api/v1/segments/{seg}/evidence-lock", json={}, headers=viewer).status_code == 403
    r = client.post(f"/api/v1/segments/{seg}/evidence-lock", json={"incident_id": "case-42"}, headers=manager)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["evidence_locked"] is True and body["incident_id"] == "case-42"
    assert body["url"] == f"/media/recordings/ev-cam/{rows[1]['file_name']}"
    tag = client.patch(f"/api/v1/segments/{rows[2]['id']}/incident", json={"incident_id": "case-42"}, headers=manager)
    assert tag.status_code == 200 and tag.json()["evidence_locked"] is False
    incidents = client.get("/api/v1/incidents", headers=viewer).json()
    (case,) = [i for i in incidents if i["incident_id"] == "case-42"]
    assert case["segment_count"] == 2 and case["locked_count"] == 1 and case["total_bytes"] == 2 * KB
    listed = client.get("/api/v1/incidents/case-42/segments", headers=viewer).json()
    assert [s["id"] for s in listed] == [seg, rows[2]["id"]]
    unlocked = client.delete(f"/api/v1/segments/{seg}/evidence-lock", headers=manager).json()
    assert unlocked["evidence_locked"] is False and unlocked["incident_id"] == "case-42"  # unlock keeps the tag
    cleared = client.patch(f"/api/v1/segments/{seg}/incident", json={"incident_id": None}, headers=manager).json()
    assert cleared["incident_id"] is None
    assert client.post("/api/v1/segments/seg_nope/evidence-lock", json={}, headers=manager).status_code == 404
    bad = client.patch(f"/api/v1/segments/{seg}/incident", json={"incident_id": "no spaces"}, headers=manager)
    assert bad.status_code == 422
    actions = [r["action"] for r in sql(env["url"], "SELECT action FROM audit_log WHERE target_id = $1", seg)]
    assert {"segment_evidence_lock", "segment_evidence_unlock", "segment_incident"} <= set(actions)


def test_system_overview_and_retention_overrides(env: dict[str, Any]) -> None:
    client, admin, manager, viewer = env["client"], env["admin"], env["manager"], env["viewer"]
    seed(env["url"], env["root"], "sys-cam", 3)
    body = client.get("/api/v1/system", headers=viewer).json()
    assert body["version"] and body["uptime_seconds"] >= 0 and body["cameras_total"] >= 1
    assert body["segments_total"] >= 3 and body["recordings_bytes"] >= 3 * KB
    storage = body["storage"]
    assert storage["disk"]["total"] > 0 and storage["disk"]["free"] > 0
    assert storage["write_rate_bytes_per_day"] >= 3 * KB and storage["projected_days_remaining"] > 0
    assert storage["retention"]["max_recordings_gb"] == 20 and not storage["retention"]["max_overridden"]
    assert storage["evidence_locks_exceed_cap"] is False
    assert client.get("/api/v1/system/retention", headers=viewer).json()["min_free_disk_gb"] == 5
    assert client.put("/api/v1/system/retention", json={"max_recordings_gb": 1}, headers=manager).status_code == 403
    r = client.put("/api/v1/system/retention", json={"max_recordings_gb": 0.5, "min_free_disk_gb": 0}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "max_recordings_gb": 0.5, "max_recordings_bytes": 1024**3 // 2, "max_overridden": True,
        "min_free_disk_gb": 0.0, "min_free_disk_bytes": 0, "min_free_overridden": True,
    }  # fmt: skip
    assert client.put("/api/v1/system/retention", json={"max_recordings_gb": 0}, headers=admin).status_code == 422
    back = client.put("/api/v1/system/retention", json={"max_recordings_gb": None}, headers=admin).json()
    assert back["max_recordings_gb"] == 20 and not back["max_overridden"] and back["min_free_overridden"]
    assert sql(env["url"], "SELECT 1 FROM audit_log WHERE action = 'retention_update'")

    # The next sweep reads the override: a tiny cap set through the API deletes footage.
    client.put("/api/v1/system/retention", json={"max_recordings_gb": 2 * KB / 1024**3}, headers=admin)

    async def sweep() -> dict[str, Any]:
        pool = await create_pool(env["url"], max_size=3)
        try:
            sweeper = RetentionSweeper(pool, SweepConfig(recordings_root=env["root"]), "api-test")
            return await sweeper.sweep()
        finally:
            await pool.close()

    outcome = asyncio.run(sweep())
    assert outcome["limits"]["max_overridden"] and outcome["deleted"]["cap"]["segments"] >= 1
    client.put("/api/v1/system/retention", json={"max_recordings_gb": None, "min_free_disk_gb": None}, headers=admin)
    last = client.get("/api/v1/system", headers=viewer).json()["storage"]["last_sweep"]
    assert last["ok"] and last["outcome"]["deleted"]["cap"]["segments"] >= 1

    metrics = client.get("/metrics", headers=admin).text
    for name in ("heldar_disk_total_bytes", "heldar_disk_free_bytes", "heldar_disk_used_ratio",
                 'heldar_retention_deleted_segments_total{reason="cap"}', "heldar_retention_deleted_bytes_total",
                 "heldar_retention_last_sweep_timestamp_seconds", "heldar_evidence_locked_bytes"):  # fmt: skip
        assert name in metrics, name


def test_camera_delete_purges_footage_and_a_reused_id_starts_empty(env: dict[str, Any]) -> None:
    client, admin, root = env["client"], env["admin"], env["root"]
    rows = seed(env["url"], root, "gone-cam", 5)
    assert len(files_on_disk(root, "gone-cam")) == 5
    client.post(f"/api/v1/segments/{rows[0]['id']}/evidence-lock", json={}, headers=admin)
    refused = client.delete("/api/v1/cameras/gone-cam", headers=admin)
    assert refused.status_code == 409 and "evidence-locked" in refused.json()["error"]
    assert len(files_on_disk(root, "gone-cam")) == 5  # nothing touched
    client.delete(f"/api/v1/segments/{rows[0]['id']}/evidence-lock", headers=admin)
    assert client.delete("/api/v1/cameras/gone-cam", headers=admin).status_code == 204
    assert not (root / "gone-cam").exists() and not any(p.name.startswith(".trash-") for p in root.iterdir())
    assert sql(env["url"], "SELECT 1 FROM segments WHERE camera_id = 'gone-cam'") == []
    audit = sql(env["url"], "SELECT detail FROM audit_log WHERE action = 'camera_delete' AND target_id = 'gone-cam'")
    assert audit and audit[0]["detail"]["files"] == 5
    # The id again: no old footage in the index, on disk, or served.
    created = client.post(
        "/api/v1/cameras", json={"id": "gone-cam", "name": "again", "main_stream_url": "rtsp://127.0.0.1:1/x"},
        headers=admin,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert client.get("/api/v1/cameras/gone-cam/segments", headers=admin).json() == []
    assert client.get(f"/media/recordings/gone-cam/{rows[1]['file_name']}", headers=admin).status_code == 404
    client.delete("/api/v1/cameras/gone-cam", headers=admin)


def test_hand_deleted_file_is_noticed_on_read_and_becomes_a_gap(env: dict[str, Any]) -> None:
    client, admin, root = env["client"], env["admin"], env["root"]
    rows = seed(env["url"], root, "hand-cam", 6, step_s=4.0)  # a lost 4 s segment is a hole (> 2 s seam)
    victim = rows[3]
    assert client.head(f"/media/recordings/hand-cam/{victim['file_name']}", headers=admin).status_code == 200
    window = {"from": rows[0]["start_time"].isoformat(), "to": rows[-1]["end_time"].isoformat()}
    assert client.get("/api/v1/cameras/hand-cam/gaps", params=window, headers=admin).json()["gap_count"] == 0
    file_of(root, "hand-cam", victim["file_name"]).unlink()
    r = client.get(f"/media/recordings/hand-cam/{victim['file_name']}", headers=admin)
    assert r.status_code == 404 and r.json() == {"error": "no such recording"}
    assert sql(env["url"], "SELECT 1 FROM segments WHERE id = $1", victim["id"]) == []
    gaps = client.get("/api/v1/cameras/hand-cam/gaps", params=window, headers=admin).json()
    assert gaps["gap_count"] == 1
    (gap,) = gaps["gaps"]
    assert abs(gap["seconds"] - 4) < 0.01 and gap["start"].startswith(victim["start_time"].strftime("%Y-%m-%dT%H:%M"))
    timeline = client.get("/api/v1/cameras/hand-cam/timeline", params=window, headers=admin).json()
    assert len(timeline["ranges"]) == 2 and timeline["segment_count"] == 5
    events = sql(
        env["url"], "SELECT payload FROM events WHERE event_type = 'segment_missing' AND camera_id = 'hand-cam'"
    )
    assert events and events[0]["payload"]["files"] == [victim["file_name"]]
    # An unindexed file in the camera's folder is not served (a deleted camera's leftovers, an orphan).
    stray = file_of(root, "hand-cam", rows[0]["file_name"]).with_name("20200101T000000Z_stray.mp4")
    stray.write_bytes(b"x")
    assert client.get(f"/media/recordings/hand-cam/{stray.name}", headers=admin).status_code == 404
