"""The recording-gaps contract over HTTP with auth on: filters, limits, ordering, 404s, roles, audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_auth_api import bearer, login, mint, settings_for, sql, start

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = settings_for(tmp_path_factory.mktemp("gaps"))
    with start(url, settings) as client:
        admin = login(client)
        for cam in ("cam-1", "cam-2"):
            r = client.post("/api/v1/cameras", json={"id": cam, "name": cam, "main_stream_url": "rtsp://h/x"},
                            headers=bearer(admin))  # fmt: skip
            assert r.status_code == 201, r.text
        states = ["pending", "filled", "failed", "pending", "pending", "failed"]
        for i, state in enumerate(states):
            start_at = T0 + timedelta(minutes=i)
            sql(url, "INSERT INTO recording_gaps (id, camera_id, gap_start, gap_end, gap_seconds, fill_state,"
                " fill_attempts, last_attempt_at, last_error) VALUES ($1, 'cam-1', $2, $3, 12, $4, $5, $6, $7)",
                f"gap_{i}", start_at, start_at + timedelta(seconds=12), state, 3 if state == "failed" else 0,
                T0 if state != "pending" else None, "timeout: replay" if state == "failed" else None)  # fmt: skip
        sql(url, "INSERT INTO recording_gaps (id, camera_id, gap_start, gap_end, gap_seconds)"
            " VALUES ('gap_other', 'cam-2', $1, $2, 5)", T0, T0 + timedelta(seconds=5))  # fmt: skip
        keys = {
            role: mint(client, admin, name=role, role=role, confirm_privileged=True)["key"]
            for role in ("viewer", "manager", "guard")
        }
        yield {"url": url, "client": client, "admin": admin, "keys": keys}


def get(env: dict[str, Any], path: str, role: str = "viewer") -> Any:
    return env["client"].get(path, headers={"X-API-Key": env["keys"][role]})


def test_list_newest_first_with_state_filter(env) -> None:  # type: ignore[no-untyped-def]
    rows = get(env, "/api/v1/cameras/cam-1/recording-gaps").json()
    assert [r["id"] for r in rows] == [f"gap_{i}" for i in (5, 4, 3, 2, 1, 0)]
    assert set(rows[0]) >= {"id", "camera_id", "gap_start", "gap_end", "gap_seconds", "fill_state", "fill_attempts",
                            "last_attempt_at", "filled_at", "last_error", "created_at"}  # fmt: skip
    failed = get(env, "/api/v1/cameras/cam-1/recording-gaps?state=failed").json()
    assert [r["id"] for r in failed] == ["gap_5", "gap_2"] and failed[0]["last_error"] == "timeout: replay"
    assert [r["id"] for r in get(env, "/api/v1/cameras/cam-2/recording-gaps").json()] == ["gap_other"]


@pytest.mark.parametrize("state", ["done", "PENDING", "", "pending;drop"])
def test_bad_state_is_422(env, state: str) -> None:  # type: ignore[no-untyped-def]
    r = get(env, f"/api/v1/cameras/cam-1/recording-gaps?state={state}")
    assert r.status_code == 422 and r.json()["details"]


@pytest.mark.parametrize(("limit", "expected"), [("0", 1), ("-5", 1), ("2", 2), ("99999", 6)])
def test_limit_is_clamped(env, limit: str, expected: int) -> None:  # type: ignore[no-untyped-def]
    r = get(env, f"/api/v1/cameras/cam-1/recording-gaps?limit={limit}")
    assert r.status_code == 200 and len(r.json()) == expected


def test_not_found(env) -> None:  # type: ignore[no-untyped-def]
    assert get(env, "/api/v1/cameras/nope/recording-gaps").status_code == 404
    r = env["client"].post("/api/v1/cameras/cam-1/recording-gaps/gap_other/retry",
                           headers={"X-API-Key": env["keys"]["manager"]})  # fmt: skip
    assert r.status_code == 404 and "error" in r.json()
    r = env["client"].post("/api/v1/cameras/cam-1/recording-gaps/gap_missing/retry", headers=bearer(env["admin"]))
    assert r.status_code == 404


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("guard", 403), ("manager", 200)])
def test_retry_roles_reset_and_audit(env, role: str, status: int) -> None:  # type: ignore[no-untyped-def]
    r = env["client"].post("/api/v1/cameras/cam-1/recording-gaps/gap_2/retry", headers={"X-API-Key": env["keys"][role]})
    assert r.status_code == status, r.text
    if status != 200:
        return
    row = r.json()
    assert row["fill_state"] == "pending" and row["fill_attempts"] == 0
    assert row["last_attempt_at"] is None and row["filled_at"] is None
    audit = sql(env["url"], "SELECT * FROM audit_log WHERE action = 'anr_retry_gap' ORDER BY created_at DESC")
    assert audit, "retry must be audited"
    entry = audit[0]
    assert entry["target_type"] == "recording_gap" and entry["target_id"] == "gap_2"
    assert entry["detail"]["camera_id"] == "cam-1" and entry["subject_camera_id"] == "cam-1"
    assert entry["role"] == "manager" and entry["actor"].startswith("key_")


def test_fill_now_needs_manager_and_a_recorder(env) -> None:  # type: ignore[no-untyped-def]
    viewer = env["client"].post("/api/v1/cameras/cam-1/recording-gaps/gap_0/fill-now",
                                headers={"X-API-Key": env["keys"]["viewer"]})  # fmt: skip
    assert viewer.status_code == 403
    manager = env["client"].post("/api/v1/cameras/cam-1/recording-gaps/gap_0/fill-now",
                                 headers={"X-API-Key": env["keys"]["manager"]})  # fmt: skip
    assert manager.status_code == 503 and "error" in manager.json()  # this API process has no Ray link
    assert sql(env["url"], "SELECT 1 FROM audit_log WHERE action = 'anr_fill_now'")


def test_anr_metrics(env) -> None:  # type: ignore[no-untyped-def]
    r = env["client"].get("/metrics", headers=bearer(env["admin"]))
    assert r.status_code == 200
    text = r.text
    assert 'heldar_recording_gaps{state="failed"}' in text and 'heldar_recording_gaps{state="pending"}' in text
    assert 'heldar_anr_fill_attempts_total{outcome="filled"}' in text
    assert "heldar_anr_recovered_seconds_total" in text
