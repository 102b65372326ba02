"""Zones over HTTP with auth on: CRUD, idempotent create, 422 geometry reasons, roles and scope, audit,
zone events with filters, aggregates and occupancy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_auth_api import audit_rows, bearer, login, mint, settings_for, sql, start

pytestmark = pytest.mark.integration

T0 = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
SQUARE = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    with start(url, settings_for(tmp_path_factory.mktemp("zones"), webhooks_enabled=False)) as client:
        admin = login(client)
        for cam in ("cam-1", "cam-2"):
            r = client.post("/api/v1/cameras", json={"id": cam, "name": cam, "main_stream_url": "rtsp://h/x"},
                            headers=bearer(admin))  # fmt: skip
            assert r.status_code == 201, r.text
        keys = {role: mint(client, admin, name=role, role=role, confirm_privileged=True)["key"]
                for role in ("viewer", "manager")}  # fmt: skip
        scoped = mint(client, admin, name="scoped", role="manager", capabilities=["camera:read", "registry:manage"],
                      scope_kind="cameras", scope_cameras=["cam-2"], confirm_privileged=True)["key"]  # fmt: skip
        keys["scoped"] = scoped
        yield {"url": url, "client": client, "admin": admin, "keys": keys}


def call(env: dict[str, Any], method: str, path: str, role: str = "manager", **kw: Any) -> Any:
    return env["client"].request(method, path, headers={"X-API-Key": env["keys"][role]}, **kw)


def test_create_is_idempotent_on_camera_and_name_and_audited(env) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "door", "polygon": SQUARE, "dwell_seconds": 5, "labels": ["person"], "severity": "warning",
            "config": {"confirm_frames": 3}}  # fmt: skip
    r = call(env, "POST", "/api/v1/cameras/cam-1/zones", json=body)
    assert r.status_code == 201, r.text
    zone = r.json()
    assert zone["id"].startswith("zone_") and zone["kind"] == "region" and zone["polygon"] == SQUARE
    again = call(env, "POST", "/api/v1/cameras/cam-1/zones", json={**body, "dwell_seconds": 9})
    assert again.status_code == 200 and again.json()["id"] == zone["id"] and again.json()["dwell_seconds"] == 5
    same_name_elsewhere = call(env, "POST", "/api/v1/cameras/cam-2/zones", json=body)
    assert same_name_elsewhere.status_code == 201 and same_name_elsewhere.json()["id"] != zone["id"]
    listed = call(env, "GET", "/api/v1/cameras/cam-1/zones", role="viewer").json()
    assert [z["name"] for z in listed] == ["door"]
    rows = audit_rows(env["url"], "zone_create")
    assert rows and rows[0]["subject_camera_id"] == "cam-1" and rows[0]["target_id"] == zone["id"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"polygon": [[0.2, 0.2], [0.8, 0.8], [0.8, 0.2], [0.3, 0.9]]}, "self-intersecting"),
        ({"polygon": [[0.2, 0.2], [1.5, 0.2], [0.8, 0.8]]}, "out of range"),
        ({"polygon": [[0.2, 0.2], [0.8, 0.2]]}, "3-512 points"),
        ({"kind": "line", "polygon": SQUARE}, "exactly 2"),
        ({"polygon": SQUARE, "config": {"direction": "up"}}, "direction"),
        ({"polygon": SQUARE, "labels": [""]}, "labels"),
    ],
)
def test_bad_geometry_is_422_with_the_reason(env, body: dict[str, Any], reason: str) -> None:  # type: ignore[no-untyped-def]
    r = call(env, "POST", "/api/v1/cameras/cam-1/zones", json={"name": "bad", **body})
    assert r.status_code == 422, r.text
    assert reason in r.json()["error"] and r.json()["details"]


def test_nan_is_422(env) -> None:  # type: ignore[no-untyped-def]
    raw = '{"name": "nan", "polygon": [[0.2, NaN], [0.8, 0.2], [0.8, 0.8]]}'
    headers = {"X-API-Key": env["keys"]["manager"], "Content-Type": "application/json"}
    r = env["client"].post("/api/v1/cameras/cam-1/zones", content=raw, headers=headers)
    assert r.status_code == 422 and "finite" in r.json()["error"]


def test_patch_revalidates_geometry_on_kind_change_and_delete(env) -> None:  # type: ignore[no-untyped-def]
    zone = call(env, "POST", "/api/v1/cameras/cam-1/zones", json={"name": "edit-me", "polygon": SQUARE}).json()
    path = f"/api/v1/zones/{zone['id']}"
    r = call(env, "PATCH", path, json={"kind": "line"})
    assert r.status_code == 422 and "exactly 2" in r.json()["error"]
    r = call(env, "PATCH", path, json={"kind": "line", "polygon": [[0, 0.5], [1, 0.5]], "severity": "critical"})
    assert r.status_code == 200 and r.json()["kind"] == "line" and r.json()["severity"] == "critical"
    assert call(env, "PATCH", path, json={"name": "door"}).status_code == 409  # name taken on cam-1
    assert call(env, "PATCH", path, json={"enabled": False}, role="viewer").status_code == 403
    assert call(env, "GET", path, role="viewer").json()["name"] == "edit-me"
    assert call(env, "DELETE", path).status_code == 204
    assert call(env, "DELETE", path).status_code == 404
    assert call(env, "GET", path, role="viewer").status_code == 404
    assert {r["action"] for r in sql(env["url"], "SELECT action FROM audit_log WHERE target_id = $1", zone["id"])} == {
        "zone_create", "zone_update", "zone_delete"}  # fmt: skip


def test_scoped_key_sees_zones_of_its_cameras_only(env) -> None:  # type: ignore[no-untyped-def]
    mine = call(env, "POST", "/api/v1/cameras/cam-2/zones", json={"name": "scoped", "polygon": SQUARE}, role="scoped")
    assert mine.status_code == 201
    other = call(env, "POST", "/api/v1/cameras/cam-1/zones", json={"name": "hidden", "polygon": SQUARE}).json()
    assert call(env, "GET", "/api/v1/cameras/cam-1/zones", role="scoped").status_code == 403
    for method in ("GET", "DELETE"):
        assert call(env, method, f"/api/v1/zones/{other['id']}", role="scoped").status_code == 404
    assert call(env, "PATCH", f"/api/v1/zones/{other['id']}", json={"enabled": False}, role="scoped").status_code == 404
    assert call(env, "GET", f"/api/v1/zones/{mine.json()['id']}", role="scoped").status_code == 200


def test_zone_events_filters_aggregates_and_occupancy(env) -> None:  # type: ignore[no-untyped-def]
    url = env["url"]
    zone = call(env, "POST", "/api/v1/cameras/cam-1/zones", json={"name": "bay", "polygon": SQUARE}).json()
    sql(url, "INSERT INTO segments (id, camera_id, file_name, start_time, end_time, duration_s, size_bytes)"
        " VALUES ('seg_z', 'cam-1', 'z.mp4', $1, $2, 60, 10)", T0, T0 + timedelta(seconds=60))  # fmt: skip
    plan = [("enter", "t1", 0), ("dwell", "t1", 30), ("exit", "t1", 90), ("enter", "t2", 3700)]
    for i, (kind, track, secs) in enumerate(plan):
        sql(url, "INSERT INTO zone_events (id, camera_id, zone_id, zone_name, track_id, event_type, \"timestamp\")"
            " VALUES ($1, 'cam-1', $2, 'bay', $3, $4, $5)", f"zev_{i}", zone["id"], track, kind,
            T0 + timedelta(seconds=secs))  # fmt: skip
    sql(url, "INSERT INTO zone_occupancy (zone_id, camera_id, count) VALUES ($1, 'cam-1', 1)", zone["id"])
    base = "/api/v1/cameras/cam-1/zone-events"
    rows = call(env, "GET", base, role="viewer").json()
    assert [r["id"] for r in rows] == ["zev_3", "zev_2", "zev_1", "zev_0"]
    assert [r["segment_id"] for r in rows] == [None, None, "seg_z", "seg_z"]
    assert [r["id"] for r in call(env, "GET", f"{base}?track_id=t1&event_type=exit", role="viewer").json()] == ["zev_2"]
    assert len(call(env, "GET", f"{base}?limit=0", role="viewer").json()) == 1
    window = {"from": T0.isoformat(), "to": (T0 + timedelta(seconds=60)).isoformat()}
    assert [r["id"] for r in call(env, "GET", base, params=window, role="viewer").json()] == ["zev_1", "zev_0"]
    assert call(env, "GET", f"{base}?event_type=jump", role="viewer").status_code == 422
    agg = call(env, "GET", f"{base}/aggregates", role="viewer",
               params={"from": T0.isoformat(), "to": (T0 + timedelta(hours=3)).isoformat()}).json()  # fmt: skip
    assert agg["bucket_minutes"] == 60 and "from" in agg
    counts = {(b["event_type"], b["bucket_start"][:13]): b["count"] for b in agg["buckets"]}
    assert counts == {("enter", "2026-07-01T10"): 1, ("dwell", "2026-07-01T10"): 1, ("exit", "2026-07-01T10"): 1,
                      ("enter", "2026-07-01T11"): 1}  # fmt: skip
    assert call(env, "GET", f"{base}/aggregates?bucket_minutes=0", role="viewer").status_code == 422
    occ = call(env, "GET", "/api/v1/cameras/cam-1/zones/occupancy", role="viewer").json()
    assert {z["zone_name"]: z["count"] for z in occ["zones"]}["bay"] == 1
    assert call(env, "GET", "/api/v1/cameras/nope/zones/occupancy", role="viewer").status_code == 404
