"""Task leases (security F19) with real PostgreSQL: read-only roles cannot take leases, and one credential
holds a bounded number of live leases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_auth_api import bearer, login, mint, settings_for, sql, start

pytestmark = pytest.mark.integration


def test_read_only_roles_cannot_lease_and_leases_per_credential_are_bounded(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(tmp_path, ai_max_leases_per_credential=3)
    url = new_database()
    with start(url, settings) as client:
        admin = login(client)
        for cam in ("la", "lb"):
            r = client.post("/api/v1/cameras", json={"id": cam, "name": cam, "main_stream_url": f"rtsp://10.0.0.7/{cam}",
                                                      "record_enabled": False}, headers=bearer(admin))  # fmt: skip
            assert r.status_code == 201, r.text
            for kind in ("person", "car", "motion"):
                r = client.post(f"/api/v1/cameras/{cam}/ai-tasks", json={"task_type": kind}, headers=bearer(admin))
                assert r.status_code == 201, r.text
        keys = {role: mint(client, admin, name=role, role=role, confirm_privileged=True)["key"]
                for role in ("viewer", "guard", "manager", "integration")}  # fmt: skip
        for role in ("viewer", "guard", "manager"):
            r = client.post("/api/v1/ai/leases", json={"worker_id": f"w-{role}"}, headers={"X-API-Key": keys[role]})
            assert r.status_code == 403, (role, r.text)
            assert client.delete("/api/v1/ai/leases/lse_x", headers={"X-API-Key": keys[role]}).status_code == 403
        worker = {"X-API-Key": keys["integration"]}
        first = client.post("/api/v1/ai/leases", json={"worker_id": "w1", "task_types": ["person", "car"]},
                            headers=worker)  # fmt: skip
        assert first.status_code == 200, first.text
        held = sorted(t["id"] for t in first.json()["tasks"])
        assert len(held) == 3  # four person/car tasks exist, the credential may hold three
        renewed = client.post("/api/v1/ai/leases", json={"worker_id": "w1"}, headers=worker)  # all six asked
        assert renewed.status_code == 200 and sorted(t["id"] for t in renewed.json()["tasks"]) == held
        more = client.post("/api/v1/ai/leases", json={"worker_id": "w1", "task_types": ["motion"]}, headers=worker)
        assert more.status_code == 429 and more.headers["Retry-After"], more.text
        leased = sql(url, "SELECT count(*) AS n FROM ai_task_leases WHERE expires_at > now()")[0]["n"]
        assert leased == 3
        assert client.delete(f"/api/v1/ai/leases/{renewed.json()['lease_id']}", headers=worker).json()["released"] == 3
        assert client.post("/api/v1/ai/leases", json={"worker_id": "w1", "task_types": ["motion"]},
                           headers=worker).status_code == 200  # fmt: skip
