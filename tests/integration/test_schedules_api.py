"""Recording schedules over HTTP and in the stores: CRUD, errors, scope, audit; who records when; the shown
state; ``/gaps`` and the persisted gap detector never count time outside the windows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from heldar.recording.records import RecordingBatch, SegmentRecord
from heldar.store import cameras as camera_store
from heldar.store import event_recording
from heldar.store import recording as recording_store
from heldar.store import schedules as schedule_store
from heldar.store.database import create_pool
from tests.integration.schedule_windows import TEST_ZONE, window_body
from tests.integration.test_auth_api import audit_rows, bearer, login, mint, settings_for, sql, start

pytestmark = pytest.mark.integration

CAMS = {"sch-a": "scheduled", "sch-b": "scheduled", "sch-ev": "scheduled_event", "cont": "continuous"}


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = settings_for(tmp_path_factory.mktemp("schapi"), schedule_timezone="Europe/Berlin")
    with start(url, settings) as client:
        admin = login(client)
        for cam, mode in CAMS.items():
            body = {"id": cam, "name": cam, "main_stream_url": "rtsp://h/x", "record_mode": mode}
            r = client.post("/api/v1/cameras", json=body, headers=bearer(admin))
            assert r.status_code == 201, r.text
        manager = mint(client, admin, name="m", role="manager", confirm_privileged=True)["key"]
        viewer = mint(client, admin, name="v", role="viewer")["key"]
        scoped = mint(client, admin, name="s", role="manager", scope_kind="cameras", scope_cameras=["sch-b"],
                      capabilities=["camera:read", "registry:manage"], confirm_privileged=True)["key"]  # fmt: skip
        yield {"url": url, "client": client, "manager": {"X-API-Key": manager}, "viewer": {"X-API-Key": viewer},
               "scoped": {"X-API-Key": scoped}}  # fmt: skip


def post(env: dict[str, Any], camera: str, body: dict[str, Any], who: str = "manager") -> Any:
    return env["client"].post(f"/api/v1/cameras/{camera}/schedules", json=body, headers=env[who])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def with_pool(url: str, fn: Any) -> Any:
    pool = await create_pool(url, max_size=2)
    try:
        return await fn(pool)
    finally:
        await pool.close()


def test_create_list_get_patch_delete_and_audit(env) -> None:  # type: ignore[no-untyped-def]
    client = env["client"]
    r = post(env, "sch-a", {"days": [4, 0, 0], "time_start": "22:00", "time_end": "06:30"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith("sch_") and created["camera_id"] == "sch-a"
    assert created["days"] == [0, 4] and (created["time_start"], created["time_end"]) == ("22:00", "06:30")
    assert created["timezone"] == "Europe/Berlin" and created["enabled"] is True  # HELDAR_SCHEDULE_TIMEZONE
    listed = client.get("/api/v1/cameras/sch-a/schedules", headers=env["viewer"]).json()
    assert [s["id"] for s in listed] == [created["id"]]
    got = client.get(f"/api/v1/schedules/{created['id']}", headers=env["viewer"])
    assert got.status_code == 200 and got.json() == created
    r = client.patch(f"/api/v1/schedules/{created['id']}", json={"time_end": "24:00", "enabled": False,
                     "timezone": "America/New_York"}, headers=env["manager"])  # fmt: skip
    assert r.status_code == 200, r.text
    patched = r.json()
    assert (patched["time_end"], patched["enabled"], patched["timezone"]) == ("24:00", False, "America/New_York")
    assert patched["days"] == [0, 4] and patched["updated_at"] > created["updated_at"]
    rows = sql(env["url"], "SELECT start_s, end_s FROM camera_schedules WHERE id = $1", created["id"])
    assert rows == [{"start_s": 22 * 3600, "end_s": 86400}]
    assert client.delete(f"/api/v1/schedules/{created['id']}", headers=env["manager"]).status_code == 204
    assert client.get(f"/api/v1/schedules/{created['id']}", headers=env["viewer"]).status_code == 404
    for action in ("schedule_create", "schedule_update", "schedule_delete"):
        rows = audit_rows(env["url"], action)
        assert rows and rows[-1]["target_id"] == created["id"] and rows[-1]["subject_camera_id"] == "sch-a", action
    assert audit_rows(env["url"], "schedule_update")[-1]["detail"]["fields"] == ["enabled", "time_end", "timezone"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"days": [], "time_start": "08:00", "time_end": "09:00"}, "days"),
        ({"days": [7], "time_start": "08:00", "time_end": "09:00"}, "days"),
        ({"days": [1], "time_start": "08:00", "time_end": "08:00"}, "time_end"),
        ({"days": [1], "time_start": "00:00", "time_end": "00:00:00"}, "time_end"),
        ({"days": [1], "time_start": "8:00", "time_end": "09:00"}, "time_start"),
        ({"days": [1], "time_start": "24:00", "time_end": "09:00"}, "time_start"),
        ({"days": [1], "time_start": "08:00", "time_end": "09:00", "timezone": "Mars/Base"}, "timezone"),
        ({"days": [1], "time_start": "08:00", "time_end": "09:00", "extra": 1}, "extra"),
        ({"days": [1], "time_start": "08:00"}, "time_end"),
    ],
)
def test_invalid_bodies_are_422_with_details(env, body: dict[str, Any], field: str) -> None:  # type: ignore[no-untyped-def]
    r = post(env, "sch-a", body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert set(payload) == {"error", "details"} and any(d["field"] == field for d in payload["details"]), payload


def test_errors_404_409_and_scope(env) -> None:  # type: ignore[no-untyped-def]
    client = env["client"]
    body = {"days": [2], "time_start": "10:00", "time_end": "11:00", "timezone": "UTC"}
    assert post(env, "ghost", body).status_code == 404
    assert post(env, "sch-a", body, who="viewer").status_code == 403
    first = post(env, "sch-b", body)
    assert first.status_code == 201
    dup = post(env, "sch-b", body)
    assert dup.status_code == 409 and set(dup.json()) == {"error"}
    other = post(env, "sch-b", {**body, "time_end": "12:00"}).json()
    r = client.patch(f"/api/v1/schedules/{other['id']}", json={"time_end": "11:00"}, headers=env["manager"])
    assert r.status_code == 409
    r = client.patch(f"/api/v1/schedules/{other['id']}", json={"time_start": "12:00"}, headers=env["manager"])
    assert r.status_code == 422 and "differ" in r.json()["error"]
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {}} if method == "patch" else {}
        r = getattr(client, method)("/api/v1/schedules/sch_nothere", headers=env["manager"], **kwargs)
        assert r.status_code == 404 and "error" in r.json()
    # A key scoped to sch-b sees its schedules and no one else's (404 as if absent).
    mine = post(env, "sch-b", {**body, "days": [3]}, who="scoped")
    assert mine.status_code == 201
    foreign = post(env, "sch-a", {**body, "days": [3]}).json()
    assert post(env, "sch-a", {**body, "days": [5]}, who="scoped").status_code == 403
    assert client.get(f"/api/v1/schedules/{mine.json()['id']}", headers=env["scoped"]).status_code == 200
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"enabled": False}} if method == "patch" else {}
        r = getattr(client, method)(f"/api/v1/schedules/{foreign['id']}", headers=env["scoped"], **kwargs)
        assert r.status_code == 404, (method, r.text)
    assert client.get(f"/api/v1/schedules/{foreign['id']}", headers=env["manager"]).json()["enabled"] is True
    # Deleting the camera deletes its schedules.
    sql(env["url"], "INSERT INTO cameras (id, name, main_stream_url) VALUES ('gone', 'gone', 'rtsp://h/x')")
    gone = post(env, "gone", body).json()
    sql(env["url"], "DELETE FROM cameras WHERE id = 'gone'")
    assert client.get(f"/api/v1/schedules/{gone['id']}", headers=env["manager"]).status_code == 404


def test_record_mode_values_and_who_records_now(env) -> None:  # type: ignore[no-untyped-def]
    client, url = env["client"], env["url"]
    r = client.patch("/api/v1/cameras/cont", json={"record_mode": "scheduled_event"}, headers=env["manager"])
    assert r.status_code == 200 and r.json()["record_mode"] == "scheduled_event"
    r = client.patch("/api/v1/cameras/cont", json={"record_mode": "sometimes"}, headers=env["manager"])
    assert r.status_code == 422
    assert client.patch("/api/v1/cameras/cont", json={"record_mode": "continuous"}, headers=env["manager"]).is_success
    sql(url, "INSERT INTO cameras (id, name, main_stream_url, record_mode) VALUES ('sch-now', 'n', 'rtsp://h/x',"
             " 'scheduled')")  # fmt: skip
    sql(url, "INSERT INTO camera_status (camera_id, state) VALUES ('sch-now', 'offline')")
    now = datetime.now(UTC)
    # No schedule: a scheduled camera never records, and shows disabled.
    assert "sch-now" not in run(with_pool(url, lambda p: camera_store.camera_ids_to_record(p)))
    health = client.get("/api/v1/cameras/sch-now/health", headers=env["viewer"]).json()
    assert health["state"] == "disabled"
    created = post(env, "sch-now", window_body(now - timedelta(minutes=5), now + timedelta(minutes=5))).json()
    assert created["timezone"] == TEST_ZONE
    versions = run(with_pool(url, lambda p: camera_store.camera_ids_to_record(p)))
    assert "sch-now" in versions and "cont" in versions and "sch-ev" in versions
    assert client.get("/api/v1/cameras/sch-now/health", headers=env["viewer"]).json()["state"] == "offline"
    listed = {s["camera_id"]: s["state"] for s in client.get("/api/v1/health/cameras", headers=env["viewer"]).json()}
    assert listed["sch-now"] == "offline"
    # The same camera at other instants: off after the window, on just before it (start-early lead), and
    # its version is the same all through the window.
    at = lambda t: run(with_pool(url, lambda p: camera_store.camera_ids_to_record(p, now=t)))  # noqa: E731
    assert "sch-now" not in at(now + timedelta(minutes=5, seconds=1))
    assert "sch-now" not in at(now - timedelta(minutes=5, seconds=25))
    assert "sch-now" in at(now - timedelta(minutes=5, seconds=10))
    assert at(now - timedelta(minutes=4))["sch-now"] == at(now + timedelta(minutes=4))["sch-now"]
    assert "sch-ev" in at(now + timedelta(hours=3))  # scheduled_event stays armed outside its windows
    # What a supervisor may wait for instead of its tick: no later than this window's close.
    change = run(with_pool(url, lambda p: schedule_store.next_schedule_change(p, now)))
    assert change is not None and now < change <= now + timedelta(minutes=5)
    client.patch(f"/api/v1/schedules/{created['id']}", json={"enabled": False}, headers=env["manager"])
    assert "sch-now" not in run(with_pool(url, lambda p: camera_store.camera_ids_to_record(p)))
    listed = {s["camera_id"]: s["state"] for s in client.get("/api/v1/health/cameras", headers=env["viewer"]).json()}
    assert listed["sch-now"] == "disabled" and listed["cont"] != "disabled"
    metrics = client.get("/metrics", headers=env["viewer"]).text
    assert 'heldar_camera_up{camera="sch-now"} 0.0' in metrics
    assert 'heldar_camera_state{camera="sch-now",state="disabled"} 1.0' in metrics


def _segments(env: dict[str, Any], camera: str, spans: list[tuple[datetime, datetime]]) -> None:
    for i, (a, b) in enumerate(spans):
        sql(env["url"], "INSERT INTO segments (id, camera_id, file_name, start_time, end_time, duration_s,"
            " size_bytes) VALUES ($1, $2, $3, $4, $5, $6, 1000)", f"seg_{camera}_{i}", camera, f"{camera}-{i}.mp4",
            a, b, (b - a).total_seconds())  # fmt: skip


def test_gaps_skip_time_outside_windows_and_before_registration(env) -> None:  # type: ignore[no-untyped-def]
    client, url = env["client"], env["url"]
    now = datetime.now(UTC).replace(microsecond=0)
    t = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    for cam, mode in (("gap-sch", "scheduled"), ("gap-cont", "continuous")):
        sql(url, "INSERT INTO cameras (id, name, main_stream_url, record_mode, created_at) VALUES ($1, $1,"
                 " 'rtsp://h/x', $2, $3)", cam, mode, t(100))  # fmt: skip
        _segments(env, cam, [(t(60), t(50)), (t(45), t(40)), (t(20), t(15))])
    post(env, "gap-sch", window_body(t(60), t(40)))
    post(env, "gap-sch", window_body(t(22), t(10)))
    query = {"from": t(180).isoformat(), "to": t(5).isoformat()}

    def holes(cam: str) -> list[tuple[datetime, datetime]]:
        r = client.get(f"/api/v1/cameras/{cam}/gaps", params=query, headers=env["viewer"])
        assert r.status_code == 200, r.text
        return [(datetime.fromisoformat(g["start"]), datetime.fromisoformat(g["end"])) for g in r.json()["gaps"]]

    # Continuous: every hole since it was registered (not before: it was registered 100 minutes ago).
    assert holes("gap-cont") == [(t(100), t(60)), (t(50), t(45)), (t(40), t(20)), (t(15), t(5))]
    # Scheduled: only holes inside the windows [60, 40] and [22, 10] minutes ago.
    assert holes("gap-sch") == [(t(50), t(45)), (t(22), t(20)), (t(15), t(10))]
    body = client.get("/api/v1/cameras/gap-sch/gaps", params=query, headers=env["viewer"]).json()
    assert body["gap_count"] == 3 and body["total_gap_seconds"] == 12 * 60


def _seg(start: datetime, seconds: float = 2.0) -> SegmentRecord:
    return SegmentRecord(f"{start:%Y%m%dT%H%M%S}.mp4", start, start + timedelta(seconds=seconds), seconds, 1000)


def test_persisted_gaps_open_only_inside_windows(env) -> None:  # type: ignore[no-untyped-def]
    url = env["url"]
    for cam, mode in (("pg-sch", "scheduled"), ("pg-cont", "continuous")):
        sql(url, "INSERT INTO cameras (id, name, main_stream_url, record_mode) VALUES ($1, $1, 'rtsp://h/x', $2)",
            cam, mode)  # fmt: skip
    # Monday 08:00-09:00 and 10:00-11:00 UTC (2026-11-30 is a Monday).
    for opens, closes in (("08:00", "09:00"), ("10:00", "11:00")):
        post(env, "pg-sch", {"days": [0], "time_start": opens, "time_end": closes, "timezone": "UTC"})
    mon = datetime(2026, 11, 30, tzinfo=UTC)
    at = lambda h, m, s=0: mon + timedelta(hours=h, minutes=m, seconds=s)  # noqa: E731
    batches = [
        [_seg(at(8, 58), 120)],  # records until the window closes at 09:00
        [_seg(at(9, 59, 59))],  # the next window: the out-of-window hole 09:00-09:59:59 is no gap
        [_seg(at(10, 30))],  # an outage inside the window: 10:00:01-10:30
        [_seg(at(10, 20) + timedelta(days=7))],  # down for a week: three in-window parts
    ]

    def apply(cam: str) -> list[dict[str, Any]]:
        async def go(pool: Any) -> list[dict[str, Any]]:
            opened = []
            for segs in batches:
                batch = RecordingBatch(cam, segments=segs)
                opened += (await recording_store.apply_recording_batch(pool, batch, gap_threshold_s=3)).gaps
            return opened

        return run(with_pool(url, go))  # type: ignore[no-any-return]

    got = [(g["gap_start"], g["gap_end"]) for g in apply("pg-sch")]
    week = timedelta(days=7)
    assert got == [
        (at(10, 0, 1), at(10, 30)),
        (at(10, 30, 2), at(11, 0)),
        (at(8, 0) + week, at(9, 0) + week),
        (at(10, 0) + week, at(10, 20) + week),
    ]
    rows = sql(url, "SELECT gap_start FROM recording_gaps WHERE camera_id = 'pg-sch' ORDER BY gap_start")
    assert [r["gap_start"] for r in rows] == [g[0] for g in got]
    events = sql(url, "SELECT count(*) AS n FROM events WHERE camera_id = 'pg-sch' AND event_type = 'recording_gap'")
    assert events[0]["n"] == 4
    # The same segments on a continuous camera: every hole over the threshold is a gap.
    assert [(g["gap_start"], g["gap_end"]) for g in apply("pg-cont")] == [
        (at(9, 0), at(9, 59, 59)),
        (at(10, 0, 1), at(10, 30)),
        (at(10, 30, 2), at(10, 20) + week),
    ]


def test_scheduled_event_keeps_footage_inside_windows_and_takes_triggers(env) -> None:  # type: ignore[no-untyped-def]
    url = env["url"]
    post(env, "sch-ev", {"days": [0], "time_start": "08:00", "time_end": "09:00", "timezone": "UTC"})
    mon = datetime(2026, 11, 30, tzinfo=UTC)
    inside, outside, triggered = (mon + timedelta(hours=h) for h in (8.5, 12, 14))

    async def go(pool: Any) -> Any:
        batch = RecordingBatch("sch-ev", segments=[_seg(inside), _seg(outside), _seg(triggered)])
        await recording_store.apply_recording_batch(pool, batch, gap_threshold_s=3)
        result = await event_recording.trigger(pool, "sch-ev", triggered + timedelta(seconds=1), "test")
        pruned = await event_recording.prune_unkept(pool, mon + timedelta(days=1))
        return result, pruned

    result, pruned = run(with_pool(url, go))
    assert result["triggered"] and result["pre_roll_segments_kept"] == 1
    assert pruned == [("sch-ev", _seg(outside).file_name)]
    kept = sql(url, "SELECT start_time FROM segments WHERE camera_id = 'sch-ev' ORDER BY start_time")
    assert [r["start_time"] for r in kept] == [inside, triggered]
    r = env["client"].post("/api/v1/cameras/sch-a/record-trigger", headers=env["manager"])
    assert r.status_code == 400 and "scheduled_event" in r.json()["error"]
