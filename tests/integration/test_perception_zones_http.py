"""HTTP ingest reaches the zone engine on its own (real API, Ray, PostgreSQL, a sampler for tickets), with no
kernel task analysing anything and no ingest actor running beforehand: enter, dwell and exit within 1 s of
the frame that causes them; two task streams on one camera each count; a track that leaves gets its exit
with no further detection; a consumer that fails once still gets its frame; a batch dated 9999 is refused
and the camera's zones keep working."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import ray

from actors.ingest import get_ingest
from actors.sampler import SamplerActor, sampler_name
from heldar.fakecam import FakeCamSimThread
from heldar.fakecam.scene import SceneSource
from tests.integration.test_auth_api import bearer, login, mint, settings_for, sql, start
from tests.integration.test_recording import wait_for

pytestmark = pytest.mark.integration

SQUARE = [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]]
SCRIPT = [0.1, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.8, 0.9, 0.9]  # out x2, in x6, out x3
CAMERAS = ("z-free", "z-ticket", "z-two", "z-leave", "z-flaky", "z-future")
TRACK_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    namespace = f"{ray_session}-zones-http"
    settings = settings_for(
        tmp_path_factory.mktemp("zones-http"), ray_namespace=namespace, zone_track_timeout_s=TRACK_TIMEOUT_S,
        detection_consumers="heldar.zones.engine:zone_consumer,tests.integration.perception_helpers:flaky_consumer",
        webhooks_enabled=False,
    )  # fmt: skip
    source = SceneSource(cache_dir=str(tmp_path_factory.mktemp("scene")))
    with FakeCamSimThread(source=source) as sim, start(url, settings) as client:
        sim.add_camera("z-ticket")
        admin = login(client)
        for cam in CAMERAS:
            r = client.post("/api/v1/cameras", json={"id": cam, "name": cam, "main_stream_url": sim.url("z-ticket"),
                                                      "record_enabled": False}, headers=bearer(admin))  # fmt: skip
            assert r.status_code == 201, r.text
            zone = {"name": "door", "polygon": SQUARE, "dwell_seconds": 3, "labels": ["person"]}
            r = client.post(f"/api/v1/cameras/{cam}/zones", json=zone, headers=bearer(admin))
            assert r.status_code == 201, r.text
        keys = {"worker": mint(client, admin, name="w", role="integration")["key"],
                "manager": mint(client, admin, name="m", role="manager", confirm_privileged=True)["key"]}  # fmt: skip
        assert get_ingest(namespace) is None  # no sampler, detector or ingest actor runs
        yield {"url": url, "client": client, "keys": keys, "namespace": namespace, "admin": admin,
               "sim_url": sim.url("z-ticket"), "settings": settings.model_dump(mode="json")}  # fmt: skip
        for name in (sampler_name("z-ticket", "sub"), "ingest"):
            try:
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
            except ValueError:
                pass


def post(env: dict[str, Any], body: dict[str, Any], role: str = "worker") -> Any:
    return env["client"].post("/api/v1/ai/events", json=body, headers={"X-API-Key": env["keys"][role]})


def det(x: float, track: str = "t1", label: str = "person") -> dict[str, Any]:
    return {"label": label, "confidence": 0.9, "bbox": [x - 0.05, 0.3, 0.1, 0.2], "track_id": track}  # foot (x, .5)


def zone_events(env: dict[str, Any], camera: str) -> list[dict[str, Any]]:
    return sql(env["url"], 'SELECT event_type, "timestamp", synthetic, stream FROM zone_events WHERE camera_id = $1'
               ' ORDER BY "timestamp", event_type', camera)  # fmt: skip


def events_when(env: dict[str, Any], camera: str, n: int) -> list[dict[str, Any]] | None:
    rows = zone_events(env, camera)
    return rows if len(rows) >= n else None


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def walk_and_time(env: dict[str, Any], camera: str, send: Any) -> dict[str, float]:
    """Send SCRIPT one frame a second (as a worker would); for each zone event type, the seconds from the post
    of the frame that produced it until its row was visible."""
    seen: dict[str, float] = {}
    for i, x in enumerate(SCRIPT):
        before = {r["event_type"] for r in zone_events(env, camera)}
        send(i, x)
        posted = time.monotonic()
        deadline = posted + 1.0
        while time.monotonic() < deadline:
            new = {r["event_type"] for r in zone_events(env, camera)} - before - set(seen)
            for kind in new:
                seen[kind] = time.monotonic() - posted
            if new:
                break
            time.sleep(0.05)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - posted)))
    return seen


def test_ticketless_http_ingest_gives_enter_dwell_exit_within_a_second(env) -> None:  # type: ignore[no-untyped-def]
    def send(i: int, x: float) -> None:
        body = {"camera_id": "z-free", "task_type": "people", "frame_id": f"free-{i}",
                "timestamp": iso(datetime.now(UTC)), "detections": [det(x)]}  # fmt: skip
        assert post(env, body).status_code == 200

    latency = walk_and_time(env, "z-free", send)
    assert set(latency) == {"enter", "dwell", "exit"}, latency
    assert all(v < 1.0 for v in latency.values()), latency
    assert [r["event_type"] for r in zone_events(env, "z-free")] == ["enter", "dwell", "exit"]
    assert get_ingest(env["namespace"]) is not None  # the API brought the ingest actor up by itself


def test_ticketed_http_ingest_gives_enter_dwell_exit_within_a_second(env) -> None:  # type: ignore[no-untyped-def]
    namespace, keys, client = env["namespace"], env["keys"], env["client"]
    unit = {"camera_id": "z-ticket", "profile": "sub", "url": env["sim_url"], "fps": 5, "width": 320, "tasks": []}
    sampler = SamplerActor.options(name=sampler_name("z-ticket", "sub"), namespace=namespace).remote(  # type: ignore[attr-defined]
        unit, env["settings"]
    )  # not started by anyone: the constructor starts the decoder
    wait_for(lambda: ray.get(sampler.stats.remote(), timeout=10)["state"] == "sampling", 40, "sampling")
    body = {"task_type": "people", "stream_profile": "sub", "fps": 1, "width": 320}
    r = client.post("/api/v1/cameras/z-ticket/ai-tasks", json=body, headers={"X-API-Key": keys["manager"]})
    assert r.status_code == 201, r.text
    task = r.json()["id"]
    lease = client.post("/api/v1/ai/leases", json={"worker_id": "w-1"}, headers={"X-API-Key": keys["worker"]})
    assert task in [t["id"] for t in lease.json()["tasks"]]

    def send(i: int, x: float) -> None:
        frame = client.get(f"/api/v1/cameras/z-ticket/frame?profile=sub&task={task}",
                           headers={"X-API-Key": keys["worker"]})  # fmt: skip
        ticket = frame.headers["x-frame-ticket"]
        body = {"camera_id": "z-ticket", "task_type": "people", "frame_ticket": ticket, "detections": [det(x)]}
        r = post(env, body)
        assert r.status_code == 200 and r.json()["ticketed"] is True, r.text

    latency = walk_and_time(env, "z-ticket", send)
    assert set(latency) == {"enter", "dwell", "exit"} and all(v < 1.0 for v in latency.values()), latency
    # evidence: enter and dwell carry the JPEG of their frame (the camera's sampler has it), exit does not
    rows = sql(env["url"], "SELECT event_type, evidence_url FROM zone_events WHERE camera_id = 'z-ticket'"
               ' ORDER BY "timestamp", event_type')  # fmt: skip
    urls = {r["event_type"]: r["evidence_url"] for r in rows}
    assert urls["exit"] is None and urls["enter"] and urls["enter"].startswith("/media/evidence/z-ticket/ev_"), rows
    image = client.get(urls["enter"], headers={"X-API-Key": keys["manager"]})
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:2] == b"\xff\xd8"
    logged = sql(env["url"], "SELECT payload FROM events WHERE event_type = 'zone_enter' AND camera_id = 'z-ticket'")
    assert logged[0]["payload"]["evidence_url"] == urls["enter"]
    assert client.get(urls["enter"]).status_code == 401  # scoped like other media
    bad = "/media/evidence/z-ticket/..%2F..%2Fpg%2Fpostgresql.conf"
    assert client.get(bad, headers={"X-API-Key": keys["manager"]}).status_code == 404


def test_two_task_streams_on_one_camera_each_count(env) -> None:  # type: ignore[no-untyped-def]
    """A motion and a person batch for every frame time: the person zone sees every person frame."""
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    for i, x in enumerate(SCRIPT):
        at = iso(t0 + timedelta(seconds=i))
        motion = {"camera_id": "z-two", "task_type": "motion", "frame_id": f"m-{i}", "timestamp": at,
                  "detections": [det(x, "m1", "motion")]}  # fmt: skip
        person = {"camera_id": "z-two", "task_type": "people", "frame_id": f"p-{i}", "timestamp": at,
                  "detections": [det(x)]}  # fmt: skip
        for body in (motion, person) if i % 2 else (person, motion):
            assert post(env, body).status_code == 200
    rows = wait_for(lambda: events_when(env, "z-two", 3), 10, "zone events")
    assert [(r["event_type"], r["timestamp"]) for r in rows] == [
        ("enter", t0 + timedelta(seconds=2)), ("dwell", t0 + timedelta(seconds=5)), ("exit", t0 + timedelta(seconds=8))
    ]  # fmt: skip
    assert {r["stream"] for r in rows} == {"w:people"}
    # a replay of the same frames writes nothing
    for i, x in enumerate(SCRIPT):
        body = {"camera_id": "z-two", "task_type": "people", "frame_id": f"p-{i}",
                "timestamp": iso(t0 + timedelta(seconds=i)), "detections": [det(x)]}  # fmt: skip
        assert post(env, body).json()["duplicate"] is True
    time.sleep(1)
    assert len(zone_events(env, "z-two")) == 3


def test_a_track_that_leaves_the_frame_gets_its_exit_without_further_detections(env) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        body = {"camera_id": "z-leave", "task_type": "people", "frame_id": f"l-{i}",
                "timestamp": iso(datetime.now(UTC)), "detections": [det(0.5)]}  # fmt: skip
        assert post(env, body).status_code == 200
        time.sleep(0.3)
    last = time.monotonic()
    wait_for(lambda: [r["event_type"] for r in zone_events(env, "z-leave")] == ["enter"], 5, "enter")
    occupancy = env["client"].get(
        "/api/v1/cameras/z-leave/zones/occupancy", headers={"X-API-Key": env["keys"]["manager"]}
    )
    assert occupancy.json()["zones"][0]["count"] == 1, occupancy.text
    rows = wait_for(lambda: events_when(env, "z-leave", 2), TRACK_TIMEOUT_S + 3, "exit")
    waited = time.monotonic() - last
    assert rows[1]["event_type"] == "exit" and rows[1]["synthetic"] is True
    assert TRACK_TIMEOUT_S - 0.5 <= waited <= TRACK_TIMEOUT_S + 2.0, waited  # within the timeout (+ a 1 s tick)
    occupancy = env["client"].get(
        "/api/v1/cameras/z-leave/zones/occupancy", headers={"X-API-Key": env["keys"]["manager"]}
    )
    assert occupancy.json()["zones"][0]["count"] == 0


def test_a_consumer_that_fails_once_still_gets_the_frame(env) -> None:  # type: ignore[no-untyped-def]
    frames = [f"flaky-{i}" for i in range(3)]
    for fid in frames:
        body = {"camera_id": "z-flaky", "task_type": "flaky", "frame_id": fid, "timestamp": iso(datetime.now(UTC)),
                "detections": [det(0.2)]}  # fmt: skip
        assert post(env, body).status_code == 200
    consumed = wait_for(
        lambda: (r := sql(env["url"], "SELECT payload FROM events WHERE event_type = 'flaky_consumed'"))
        and {x["payload"]["frame_id"] for x in r} >= {f"w:{f}" for f in frames} and r,
        30, "every flaky frame consumed",
    )  # fmt: skip
    assert {x["payload"]["frame_id"] for x in consumed} == {f"w:{f}" for f in frames}
    stats = ray.get(get_ingest(env["namespace"]).stats.remote(), timeout=10)
    assert stats["consumer_failures"].get("flaky") == 1 and stats["redelivered"] >= 1, stats
    assert sql(env["url"], "SELECT count(*) AS n FROM outbox WHERE camera_id = 'z-flaky' AND fanned_out_at IS NULL"
               )[0]["n"] == 0  # fmt: skip
    metrics = env["client"].get("/metrics", headers=bearer(env["admin"]))
    assert metrics.status_code == 200 and 'heldar_consumer_failures_total{consumer="flaky"} 1.0' in metrics.text


def test_a_batch_dated_9999_is_refused_and_the_zones_keep_working(env) -> None:  # type: ignore[no-untyped-def]
    future = {"camera_id": "z-future", "task_type": "people", "frame_id": "poison", "timestamp": "9999-12-31T00:00:00Z",
              "detections": []}  # fmt: skip
    r = post(env, future)
    assert r.status_code == 400 and "ahead of the server clock" in r.text, r.text
    old = {**future, "frame_id": "old", "timestamp": iso(datetime.now(UTC) - timedelta(days=30))}
    r = post(env, old)
    assert r.status_code == 400 and "retention horizon" in r.text, r.text
    assert sql(env["url"], "SELECT count(*) AS n FROM outbox WHERE camera_id = 'z-future'")[0]["n"] == 0
    t0 = datetime.now(UTC) - timedelta(seconds=20)
    for i, x in enumerate(SCRIPT):
        body = {"camera_id": "z-future", "task_type": "people", "frame_id": f"fut-{i}",
                "timestamp": iso(t0 + timedelta(seconds=i)), "detections": [det(x)]}  # fmt: skip
        assert post(env, body).status_code == 200
    rows = wait_for(lambda: events_when(env, "z-future", 3), 10, "zone events")
    assert [r["event_type"] for r in rows] == ["enter", "dwell", "exit"]
