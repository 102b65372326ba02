"""``POST /cameras/{id}/record-trigger`` over HTTP: event mode only, a window, audited, manager+."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_auth_api import bearer, login, mint, settings_for, sql, start

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    with start(url, settings_for(tmp_path_factory.mktemp("evapi"))) as client:
        admin = login(client)
        for cam, mode in (("ev-1", "event"), ("cont-1", "continuous")):
            body = {"id": cam, "name": cam, "main_stream_url": "rtsp://h/x", "record_mode": mode,
                    "pre_roll_seconds": 5, "post_roll_seconds": 20}  # fmt: skip
            assert client.post("/api/v1/cameras", json=body, headers=bearer(admin)).status_code == 201
        manager = mint(client, admin, name="m", role="manager", confirm_privileged=True)["key"]
        viewer = mint(client, admin, name="v", role="viewer")["key"]
        yield {"url": url, "client": client, "manager": manager, "viewer": viewer}


def test_trigger_opens_a_window_and_is_audited(env) -> None:  # type: ignore[no-untyped-def]
    r = env["client"].post("/api/v1/cameras/ev-1/record-trigger", json={"reason": "door forced"},
                           headers={"X-API-Key": env["manager"]})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["triggered"] is True and body["pre_roll_seconds"] == 5 and body["post_roll_seconds"] == 20
    audit = sql(env["url"], "SELECT * FROM audit_log WHERE action = 'record_trigger'")
    assert audit and audit[0]["subject_camera_id"] == "ev-1" and audit[0]["detail"]["reason"] == "door forced"
    assert sql(env["url"], "SELECT 1 FROM event_windows WHERE camera_id = 'ev-1'")


def test_trigger_refused_on_continuous_camera_and_for_viewers(env) -> None:  # type: ignore[no-untyped-def]
    r = env["client"].post("/api/v1/cameras/cont-1/record-trigger", headers={"X-API-Key": env["manager"]})
    assert r.status_code == 400 and "event" in r.json()["error"]
    r = env["client"].post("/api/v1/cameras/ev-1/record-trigger", headers={"X-API-Key": env["viewer"]})
    assert r.status_code == 403
    r = env["client"].post("/api/v1/cameras/nope/record-trigger", headers={"X-API-Key": env["manager"]})
    assert r.status_code == 404
    camera = env["client"].get("/api/v1/cameras/ev-1", headers={"X-API-Key": env["viewer"]}).json()
    assert camera["record_mode"] == "event" and camera["pre_roll_seconds"] == 5
