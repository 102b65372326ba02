"""AI tasks and the worker SDK over HTTP with auth on, a real sampler actor serving frames, and tickets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import ray

from actors.sampler import SamplerActor, sampler_name
from heldar.fakecam import FakeCamSimThread
from heldar.fakecam.scene import SceneSource
from tests.integration.test_auth_api import bearer, login, mint, settings_for, sql, start
from tests.integration.test_recording import wait_for

pytestmark = pytest.mark.integration

CAM = "api-cam"


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    namespace = f"{ray_session}-perc-api"
    settings = settings_for(tmp_path_factory.mktemp("perc-api"), ray_namespace=namespace)
    source = SceneSource(cache_dir=str(tmp_path_factory.mktemp("scene")))
    with FakeCamSimThread(source=source) as sim, start(url, settings) as client:
        sim.add_camera(CAM)
        admin = login(client)
        for cam in (CAM, "other-cam"):
            r = client.post("/api/v1/cameras", json={"id": cam, "name": cam, "main_stream_url": sim.url(CAM),
                                                      "record_enabled": False}, headers=bearer(admin))  # fmt: skip
            assert r.status_code == 201, r.text
        keys = {role: mint(client, admin, name=role, role=role, confirm_privileged=True)["key"]
                for role in ("viewer", "manager")}  # fmt: skip
        keys["worker_a"] = mint(client, admin, name="wa", role="integration")["key"]
        keys["worker_b"] = mint(client, admin, name="wb", role="integration")["key"]
        unit = {"camera_id": CAM, "profile": "sub", "url": sim.url(CAM), "fps": 5, "width": 640, "tasks": []}
        sampler = SamplerActor.options(name=sampler_name(CAM, "sub"), namespace=namespace).remote(  # type: ignore[attr-defined]
            unit, settings.model_dump(mode="json")
        )
        ray.get(sampler.start.remote(), timeout=60)
        yield {"url": url, "client": client, "admin": admin, "keys": keys}
        ray.get(sampler.stop.remote(), timeout=30)
        ray.kill(sampler)


def call(env: dict[str, Any], method: str, path: str, role: str, **kw: Any) -> Any:
    headers = {"X-API-Key": env["keys"][role], **kw.pop("headers", {})}
    return env["client"].request(method, path, headers=headers, **kw)


def test_task_crud_is_idempotent_validated_and_audited(env) -> None:  # type: ignore[no-untyped-def]
    body = {"task_type": "person", "stream_profile": "sub", "fps": 2, "width": 640}
    assert call(env, "POST", f"/api/v1/cameras/{CAM}/ai-tasks", "viewer", json=body).status_code == 403
    first = call(env, "POST", f"/api/v1/cameras/{CAM}/ai-tasks", "manager", json=body)
    assert first.status_code == 201, first.text
    again = call(env, "POST", f"/api/v1/cameras/{CAM}/ai-tasks", "manager", json={**body, "fps": 9})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"] and again.json()["fps"] == 2
    for bad in ({"task_type": "x", "fps": 31}, {"task_type": "x", "width": 100}, {"task_type": "Bad Type"},
                {"task_type": "x", "stream_profile": "hd"}):  # fmt: skip
        r = call(env, "POST", f"/api/v1/cameras/{CAM}/ai-tasks", "manager", json=bad)
        assert r.status_code == 422 and r.json()["details"], bad
    for bad_config in (
        {"task_type": "delay", "config": {"delay_s": 1e9}},
        {"task_type": "person", "config": {"work_width": 10**7}},
    ):
        r = call(env, "POST", f"/api/v1/cameras/{CAM}/ai-tasks", "manager", json=bad_config)
        assert r.status_code == 400 and "config." in r.text, r.text  # bounded: a task cannot hang a detector
    defaults = call(env, "POST", "/api/v1/cameras/other-cam/ai-tasks", "manager", json={"task_type": "motion"})
    assert defaults.status_code == 201 and defaults.json()["fps"] == 5 and defaults.json()["width"] == 1280
    task_id = defaults.json()["id"]
    r = call(env, "PATCH", f"/api/v1/ai-tasks/{task_id}", "manager", json={"config": {"history": -1}})
    assert r.status_code == 400 and "config.history" in r.text
    patched = call(env, "PATCH", f"/api/v1/ai-tasks/{task_id}", "manager", json={"fps": 1.5, "enabled": False})
    assert patched.status_code == 200 and patched.json()["fps"] == 1.5 and patched.json()["enabled"] is False
    listed = call(env, "GET", "/api/v1/cameras/other-cam/ai-tasks", "viewer").json()
    assert [t["id"] for t in listed] == [task_id]
    assert call(env, "DELETE", f"/api/v1/ai-tasks/{task_id}", "manager").status_code == 204
    assert call(env, "DELETE", f"/api/v1/ai-tasks/{task_id}", "manager").status_code == 404
    assert call(env, "GET", "/api/v1/cameras/nope/ai-tasks", "viewer").status_code == 404
    actions = {r["action"] for r in sql(env["url"], "SELECT action FROM audit_log WHERE target_type = 'ai_task'")}
    assert actions == {"ai_task_create", "ai_task_update", "ai_task_delete"}


def _task(env: dict[str, Any]) -> dict[str, Any]:
    r = call(env, "POST", f"/api/v1/cameras/{CAM}/ai-tasks", "manager", json={"task_type": "person", "fps": 2})
    return dict(r.json())


def _frame(env: dict[str, Any], role: str, task_id: str | None = None) -> Any:
    path = f"/api/v1/cameras/{CAM}/frame?profile=sub" + (f"&task={task_id}" if task_id else "")
    return wait_for(lambda: (r := call(env, "GET", path, role)).status_code == 200 and r, 30, "a sampled frame")


def test_worker_flow_lease_frame_ticket_ingest(env) -> None:  # type: ignore[no-untyped-def]
    task = _task(env)
    tasks = call(env, "GET", "/api/v1/ai/tasks?worker_id=wa-1", "worker_a").json()
    assert [t["id"] for t in tasks] == [task["id"]]
    assert tasks[0]["frame_url"] == f"/api/v1/cameras/{CAM}/frame?profile=sub&task={task['id']}"
    lease = call(env, "POST", "/api/v1/ai/leases", "worker_a", json={"worker_id": "wa-1", "ttl_secs": 5}).json()
    assert [t["id"] for t in lease["tasks"]] == [task["id"]] and lease["lease_id"].startswith("lse_")
    # worker B cannot take a task A holds
    other = call(env, "POST", "/api/v1/ai/leases", "worker_b", json={"worker_id": "wb-1"}).json()
    assert other["tasks"] == []
    frame = _frame(env, "worker_a", task["id"])
    assert frame.headers["content-type"] == "image/jpeg" and frame.content[:2] == b"\xff\xd8"
    assert int(frame.headers["x-frame-age-ms"]) < 5000 and frame.headers["x-frame-captured-at"].endswith("Z")
    ticket = frame.headers["x-frame-ticket"]
    assert "x-frame-ticket" not in _frame(env, "worker_b", task["id"]).headers  # no lease, no ticket
    body = {"camera_id": CAM, "task_type": "person", "frame_ticket": ticket, "worker_id": "wa-1",
            "detections": [{"label": "person", "confidence": 0.8, "bbox": [0.1, 0.1, 0.2, 0.5], "track_id": "t1",
                            "attributes": {"source": "forged", "colour": "grey"}}]}  # fmt: skip
    # another credential's use of the ticket is refused
    stolen = call(env, "POST", "/api/v1/ai/events", "worker_b", json=body)
    assert stolen.status_code == 401, stolen.text
    forged = call(env, "POST", "/api/v1/ai/events", "worker_a", json={**body, "frame_ticket": ticket[:-2] + "AA"})
    assert forged.status_code == 401
    assert (
        call(env, "POST", "/api/v1/ai/events", "worker_a", json={**body, "camera_id": "other-cam"}).status_code == 409
    )
    ok = call(env, "POST", "/api/v1/ai/events", "worker_a", json=body)
    assert ok.status_code == 200 and ok.json() == {"detections_ingested": 1, "ticketed": True}, ok.text
    dup = call(env, "POST", "/api/v1/ai/events", "worker_a", json=body)
    assert dup.json() == {"detections_ingested": 0, "duplicate": True, "ticketed": True}
    rows = call(env, "GET", f"/api/v1/cameras/{CAM}/detections?label=person", "viewer").json()
    assert len(rows) == 1 and rows[0]["frame_id"].startswith(f"w:{task['id']}:")
    assert rows[0]["attributes"]["source"] == "worker" and rows[0]["attributes"]["colour"] == "grey"
    assert rows[0]["attributes"]["_prov"]["worker"] == "wa-1"
    # releasing the lease makes the ticket useless
    assert call(env, "DELETE", f"/api/v1/ai/leases/{lease['lease_id']}", "worker_b").json() == {"released": 0}
    assert call(env, "DELETE", f"/api/v1/ai/leases/{lease['lease_id']}", "worker_a").json() == {"released": 1}
    again = call(env, "POST", "/api/v1/ai/events", "worker_a", json={**body, "frame_id": None})
    assert again.status_code == 401


def test_ticketless_ingest_rules(env) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    base = {"camera_id": CAM, "task_type": "motion", "timestamp": now, "frame_id": "f-1"}
    r = call(
        env, "POST", "/api/v1/ai/events", "worker_b", json={**base, "detections": [{"bbox": [0.1, 0.1, 0.2, 0.2]}]}
    )
    assert r.status_code == 200 and r.json()["ticketed"] is False
    assert call(env, "POST", "/api/v1/ai/events", "manager", json=base).status_code == 403  # no ai:ingest
    cases = [
        ({"detections": [{"bbox": [0.9, 0.1, 0.2, 0.2]}]}, 400),
        ({"detections": [{"bbox": [0.1, 0.1]}]}, 400),
        ({"detections": [{}] * 1001}, 400),
        ({"timestamp": "yesterday"}, 400),
        ({"timestamp": "9999-12-31T00:00:00Z"}, 400),
        ({"timestamp": "2020-01-01T00:00:00Z"}, 400),
        ({"event": {"event_type": "recording_gap_filled"}}, 400),
        ({"event": {"event_type": "zone_enter"}}, 400),
        ({"camera_id": "ghost"}, 404),
    ]
    for change, status in cases:
        got = call(env, "POST", "/api/v1/ai/events", "worker_b", json={**base, "frame_id": str(time.time()), **change})
        assert got.status_code == status, (change, got.text)
    big = call(env, "POST", "/api/v1/ai/events", "worker_b", content=b"x" * (8 * 1024 * 1024 + 1),
               headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413
    loiter = {**base, "frame_id": "f-2", "event": {"event_type": "loitering", "severity": "critical"}}
    event = call(env, "POST", "/api/v1/ai/events", "worker_b", json=loiter)
    assert event.status_code == 200
    row = sql(env["url"], "SELECT severity FROM events WHERE event_type = 'loitering'")[0]
    assert row["severity"] == "warning"  # worker severity is capped
    assert sql(env["url"], "SELECT 1 FROM events WHERE event_type = 'ingest_unleased'")


def test_sharding_across_live_workers(env) -> None:  # type: ignore[no-untyped-def]
    for kind in ("motion", "lpr", "count"):
        call(env, "POST", "/api/v1/cameras/other-cam/ai-tasks", "manager", json={"task_type": kind})
    all_tasks = call(env, "GET", "/api/v1/ai/tasks", "worker_b").json()
    call(env, "GET", "/api/v1/ai/tasks?worker_id=wb-1", "worker_b")
    one = call(env, "GET", "/api/v1/ai/tasks?worker_id=wb-2", "worker_b").json()
    two = call(env, "GET", "/api/v1/ai/tasks?worker_id=wb-1", "worker_b").json()
    assert {t["id"] for t in one} | {t["id"] for t in two} == {t["id"] for t in all_tasks}
    assert not {t["id"] for t in one} & {t["id"] for t in two}


def test_samplers_and_metrics(env) -> None:  # type: ignore[no-untyped-def]
    rows = call(env, "GET", "/api/v1/ai/samplers", "viewer").json()
    mine = [r for r in rows if r["camera_id"] == CAM and r["stream_profile"] == "sub"]
    assert mine and mine[0]["state"] == "sampling" and mine[0]["fps"] == 2
    text = env["client"].get("/metrics", headers=bearer(env["admin"])).text
    assert f'heldar_sampler_fps_actual{{camera="{CAM}",profile="sub"}}' in text
    assert "heldar_detections_stored" in text and "heldar_ai_tasks_enabled" in text


def test_reference_worker_end_to_end_over_http(env) -> None:  # type: ignore[no-untyped-def]
    from heldar.worker import Worker, WorkerOptions

    task = _task(env)  # person on the scene camera
    key = mint(env["client"], env["admin"], name="ref", role="integration")["key"]  # its own shard: it is alone
    worker = Worker(WorkerOptions(url="http://testserver", api_key=key, worker_id="ref-1",
                                  task_types=["person"]), client=env["client"])  # fmt: skip
    worker.run(max_seconds=6)
    assert worker.frames >= 3 and worker.posted >= 1 and worker.dropped_batches == 0, vars(worker)
    rows = sql(env["url"], "SELECT * FROM detections WHERE frame_id LIKE $1", f"w:{task['id']}:%")
    assert "ref-1" in {r["attributes"]["_prov"]["worker"] for r in rows}
    assert sql(env["url"], "SELECT 1 FROM ai_task_leases WHERE worker_id = 'ref-1'") == []  # released on stop
