"""Auth over HTTP with real PostgreSQL: login, cookies, sessions, lockout, users, API keys, audit."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth_wiring import bootstrap_admin
from config import Settings, load_settings
from tests.integration.sql import sql

pytestmark = pytest.mark.integration

ADMIN_USER = "root-admin"
ADMIN_PASSWORD = "Adm1n-Passw0rd!"
FAST_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 8, "password_hash_parallelism": 1}


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "auth_enabled": True,
        "bootstrap_admin_user": ADMIN_USER,
        "bootstrap_admin_password": ADMIN_PASSWORD,
        "login_max_failures": 3,
        "login_lockout_min": 15,
        "login_rate_per_source_per_min": 0,  # every request here comes from one address (test_security_login)
        **FAST_HASHING,
    }
    values.update(overrides)
    return load_settings(**values)


def start(url: str, settings: Settings) -> TestClient:
    asyncio.run(bootstrap_admin(settings, url))
    return TestClient(create_app(settings, url))


def login(client: TestClient, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return str(r.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mint(client: TestClient, admin: str, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "k")
    r = client.post("/api/v1/api-keys", json=body, headers=bearer(admin))
    assert r.status_code == 201, r.text
    return dict(r.json())


def audit_rows(url: str, action: str) -> list[dict[str, Any]]:
    return sql(url, "SELECT * FROM audit_log WHERE action = $1 ORDER BY created_at", action)


@pytest.fixture(scope="module")
def db_url(new_database) -> str:  # type: ignore[no-untyped-def]
    return str(new_database())


@pytest.fixture(scope="module")
def client(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with start(db_url, settings_for(tmp_path_factory.mktemp("auth"))) as c:
        yield c


@pytest.fixture(scope="module")
def admin(client: TestClient) -> str:
    return login(client)


# --- login, cookie, sessions ----------------------------------------------------------------------


def test_login_issues_a_hashed_session_token_and_a_strict_cookie(client: TestClient, db_url: str) -> None:
    r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    token = body["token"]
    assert re.fullmatch(r"vos_[0-9a-f]{64}", token)
    assert body["user"]["username"] == ADMIN_USER and body["user"]["role"] == "admin"
    assert "password_hash" not in body["user"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"heldar_session={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie
    stored = sql(db_url, "SELECT id FROM sessions WHERE id = $1", hashlib.sha256(token.encode()).hexdigest())
    assert len(stored) == 1
    assert not sql(db_url, "SELECT id FROM sessions WHERE id = $1", token)

    # the cookie alone authenticates; then Bearer; both say who we are
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["kind"] == "user" and me.json()["name"] == ADMIN_USER
    client.cookies.clear()
    assert client.get("/api/v1/auth/me").status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(token)).json()["role"] == "admin"

    out = client.post("/api/v1/auth/logout", headers=bearer(token))
    assert out.status_code == 204
    assert 'heldar_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204  # idempotent
    assert client.post("/api/v1/auth/logout").status_code == 204


def test_cookie_is_secure_when_configured(db_url: str, tmp_path: Path) -> None:
    with start(db_url, settings_for(tmp_path, auth_cookie_secure=True)) as c:
        r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert r.status_code == 200
        assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        logout = c.post("/api/v1/auth/logout", headers=bearer(r.json()["token"]))
        assert "Secure" in logout.headers["set-cookie"]


def test_session_expiry_and_debounced_last_use(client: TestClient, db_url: str) -> None:
    token = login(client)
    digest = hashlib.sha256(token.encode()).hexdigest()
    sql(db_url, "UPDATE sessions SET last_used_at = now() - interval '5 minutes' WHERE id = $1", digest)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    touched = sql(db_url, "SELECT last_used_at, now() - last_used_at AS age FROM sessions WHERE id = $1", digest)
    assert touched[0]["age"].total_seconds() < 30
    first = touched[0]["last_used_at"]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    assert sql(db_url, "SELECT last_used_at FROM sessions WHERE id = $1", digest)[0]["last_used_at"] == first

    sql(db_url, "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1", digest)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert not sql(db_url, "SELECT id FROM sessions WHERE id = $1", digest)  # deleted when seen


def test_short_ttl_and_idle_timeout(db_url: str, tmp_path: Path) -> None:
    with start(db_url, settings_for(tmp_path, session_ttl_hours=0.0001, session_idle_timeout_min=5)) as c:
        r = c.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert "Max-Age=1" in r.headers["set-cookie"]
        token = r.json()["token"]
        c.cookies.clear()
        rows = sql(
            db_url,
            "SELECT expires_at - created_at AS ttl FROM sessions WHERE id = $1",
            hashlib.sha256(token.encode()).hexdigest(),
        )
        assert rows[0]["ttl"].total_seconds() < 1
    with start(db_url, settings_for(tmp_path, session_idle_timeout_min=5)) as c:
        token = login(c)
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert c.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
        sql(db_url, "UPDATE sessions SET last_used_at = now() - interval '6 minutes' WHERE id = $1", digest)
        assert c.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
        assert not sql(db_url, "SELECT id FROM sessions WHERE id = $1", digest)


# --- lockout --------------------------------------------------------------------------------------


def _failed(client: TestClient, username: str, password: str) -> tuple[int, Any]:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    return r.status_code, r.json()


def test_lockout_unlock_and_lock_expiry(client: TestClient, admin: str, db_url: str) -> None:
    r = client.post("/api/v1/users", json={"username": "locky", "password": "locky-pass-1"}, headers=bearer(admin))
    assert r.status_code == 201
    uid = r.json()["id"]
    wrong = _failed(client, "locky", "not-the-password")
    assert wrong == (401, {"error": "invalid credentials"})
    assert _failed(client, "locky", "not-the-password") == wrong
    assert _failed(client, "locky", "not-the-password") == wrong  # third failure locks
    row = sql(db_url, "SELECT failed_login_count, locked_until FROM users WHERE id = $1", uid)[0]
    assert row["failed_login_count"] == 3 and row["locked_until"] is not None
    assert _failed(client, "locky", "locky-pass-1") == wrong  # right password, still the same 401
    assert _failed(client, "locky", "again-wrong") == wrong
    assert sql(db_url, "SELECT failed_login_count FROM users WHERE id = $1", uid)[0]["failed_login_count"] == 3
    locks = [a for a in audit_rows(db_url, "login_locked") if a["target_id"] == uid]
    assert len(locks) == 1 and locks[0]["actor"] == uid

    unlocked = client.post(f"/api/v1/users/{uid}/unlock", headers=bearer(admin))
    assert unlocked.status_code == 200 and unlocked.json()["locked_until"] is None
    assert _failed(client, "locky", "locky-pass-1")[0] == 200
    client.cookies.clear()

    for _ in range(3):
        _failed(client, "locky", "nope-nope")
    assert _failed(client, "locky", "locky-pass-1") == wrong
    sql(db_url, "UPDATE users SET locked_until = now() - interval '1 second' WHERE id = $1", uid)
    assert _failed(client, "locky", "nope-nope") == wrong  # a spent lock: the count starts afresh
    row = sql(db_url, "SELECT failed_login_count, locked_until FROM users WHERE id = $1", uid)[0]
    assert row["failed_login_count"] == 1 and row["locked_until"] is None
    assert _failed(client, "locky", "locky-pass-1")[0] == 200
    client.cookies.clear()
    assert sql(db_url, "SELECT failed_login_count FROM users WHERE id = $1", uid)[0]["failed_login_count"] == 0


def test_one_identical_401_for_unknown_wrong_locked_and_disabled(client: TestClient, admin: str) -> None:
    r = client.post("/api/v1/users", json={"username": "sleepy", "password": "sleepy-pass"}, headers=bearer(admin))
    uid = r.json()["id"]
    assert client.patch(f"/api/v1/users/{uid}", json={"active": False}, headers=bearer(admin)).status_code == 200
    answers = [
        client.post("/api/v1/auth/login", json={"username": name, "password": pw})
        for name, pw in [("nobody-here", "whatever-1"), (ADMIN_USER, "wrong-password"), ("sleepy", "sleepy-pass")]
    ]
    assert {(a.status_code, a.text, a.headers.get("set-cookie")) for a in answers} == {
        (401, '{"error":"invalid credentials"}', None)
    }


# --- users ----------------------------------------------------------------------------------------


def test_user_crud_and_session_revocation(client: TestClient, admin: str, db_url: str) -> None:
    h = bearer(admin)
    r = client.post(
        "/api/v1/users", json={"username": "carol", "password": "carol-pass", "display_name": "C"}, headers=h
    )
    assert r.status_code == 201 and r.json()["role"] == "viewer"
    uid = r.json()["id"]
    assert uid.startswith("usr_")
    assert (
        client.post("/api/v1/users", json={"username": "carol", "password": "carol-pass"}, headers=h).status_code == 409
    )
    short = client.post("/api/v1/users", json={"username": "dave", "password": "short"}, headers=h)
    assert short.status_code == 422 and "short" not in short.text
    names = [u["username"] for u in client.get("/api/v1/users", headers=h).json()]
    assert names == sorted(names) and "carol" in names
    assert client.get(f"/api/v1/users/{uid}", headers=h).json()["display_name"] == "C"

    carol = login(client, "carol", "carol-pass")
    assert client.get("/api/v1/auth/me", headers=bearer(carol)).json()["role"] == "viewer"
    assert client.get("/api/v1/users", headers=bearer(carol)).status_code == 403
    p = client.patch(f"/api/v1/users/{uid}", json={"role": "manager", "display_name": None}, headers=h)
    assert p.status_code == 200 and p.json()["role"] == "manager" and p.json()["display_name"] is None
    assert client.get("/api/v1/auth/me", headers=bearer(carol)).json()["role"] == "manager"  # at once
    assert client.patch(f"/api/v1/users/{uid}", json={"password": "carol-pass-2"}, headers=h).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(carol)).status_code == 401  # sessions ended
    carol = login(client, "carol", "carol-pass-2")
    assert client.patch(f"/api/v1/users/{uid}", json={"active": False}, headers=h).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(carol)).status_code == 401
    assert client.delete(f"/api/v1/users/{uid}", headers=h).status_code == 204
    assert client.delete(f"/api/v1/users/{uid}", headers=h).status_code == 404
    assert client.patch("/api/v1/users/usr_missing", json={}, headers=h).status_code == 404

    updates = [a for a in audit_rows(db_url, "user_update") if a["target_id"] == uid]
    assert [a["detail"].get("role") for a in updates][:1] == ["manager"]
    assert any(a["detail"]["password_changed"] for a in updates)
    assert all("carol-pass" not in str(a["detail"]) for a in updates)
    created = next(a for a in audit_rows(db_url, "user_create") if a["target_id"] == uid)
    assert created["actor_name"] == ADMIN_USER and created["role"] == "admin" and created["subject_camera_id"] is None
    assert [a["target_id"] for a in audit_rows(db_url, "user_delete")][-1] == uid


def test_last_admin_and_self_protection(db_url: str, new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    with start(url, settings_for(tmp_path)) as c:
        token = login(c)
        h = bearer(token)
        me = c.get("/api/v1/auth/me", headers=h).json()["id"]
        key = mint(c, token, role="admin", confirm_privileged=True)["key"]
        kh = {"X-API-Key": key}
        for patch in ({"role": "manager"}, {"active": False}):
            r = c.patch(f"/api/v1/users/{me}", json=patch, headers=kh)
            assert r.status_code == 400 and "last active admin" in r.json()["error"]
        r = c.delete(f"/api/v1/users/{me}", headers=kh)
        assert r.status_code == 400 and "last active admin" in r.json()["error"]
        r = c.delete(f"/api/v1/users/{me}", headers=h)
        assert r.status_code == 400 and "own account" in r.json()["error"]
        # with a second active admin the first may step down, but still not delete itself
        other = c.post(
            "/api/v1/users", json={"username": "admin2", "password": "admin2-pass", "role": "admin"}, headers=h
        ).json()["id"]
        assert c.patch(f"/api/v1/users/{other}", json={"active": False}, headers=h).status_code == 200
        assert c.patch(f"/api/v1/users/{me}", json={"role": "viewer"}, headers=kh).status_code == 400
        assert c.patch(f"/api/v1/users/{other}", json={"active": True}, headers=h).status_code == 200
        assert c.patch(f"/api/v1/users/{me}", json={"role": "viewer"}, headers=kh).status_code == 200
        assert c.delete(f"/api/v1/users/{other}", headers=kh).status_code == 400  # now the last admin
        assert sql(url, "SELECT role FROM users WHERE id = $1", me)[0]["role"] == "viewer"


# --- API keys -------------------------------------------------------------------------------------


def test_api_key_mint_is_shown_once_and_stored_hashed(client: TestClient, admin: str, db_url: str) -> None:
    minted = mint(client, admin, name="worker-1", role="integration")
    key = minted["key"]
    assert re.fullmatch(r"vok_[0-9a-f]{64}", key) and minted["key_prefix"] == key[:12]
    assert minted["legacy_role_expansion"] is True and "ai:ingest" in minted["capabilities"]
    row = sql(db_url, "SELECT key_hash, key_prefix FROM api_keys WHERE id = $1", minted["id"])[0]
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest() and row["key_prefix"] == key[:12]
    listed = client.get("/api/v1/api-keys", headers=bearer(admin)).json()
    assert minted["id"] in {k["id"] for k in listed} and key not in str(listed)
    assert "key" not in client.get(f"/api/v1/api-keys/{minted['id']}", headers=bearer(admin)).json()
    for headers in ({"X-API-Key": key}, bearer(key)):
        me = client.get("/api/v1/auth/me", headers=headers).json()
        assert me == {**me, "id": minted["id"], "kind": "api_key", "role": "integration", "camera_scope": None}
    assert sql(db_url, "SELECT last_used_at FROM api_keys WHERE id = $1", minted["id"])[0]["last_used_at"]
    mint_audit = next(a for a in audit_rows(db_url, "api_key_create") if a["target_id"] == minted["id"])
    assert mint_audit["detail"]["role"] == "integration" and mint_audit["detail"]["scope_kind"] == "all"
    assert "ai:ingest" in mint_audit["detail"]["effective_capabilities"] and key not in str(mint_audit)


def test_api_key_grant_rules_over_http(client: TestClient, admin: str) -> None:
    h = bearer(admin)
    cases = [
        ({"role": "manager"}, "confirm_privileged"),
        ({"capabilities": ["camera:read", "gate:operate"]}, "confirm_privileged"),
        ({"capabilities": ["nope:nope"]}, "unknown capabilities"),
        ({"capabilities": []}, "must not be empty"),
        ({"scope_kind": "cameras", "scope_cameras": ["cam-a"]}, "explicit capabilities"),
        ({"scope_kind": "cameras", "capabilities": ["events:read"], "scope_cameras": ["cam-a"]}, "cannot hold"),
        ({"scope_kind": "cameras", "capabilities": ["camera:read"], "scope_cameras": []}, "non-empty"),
        ({"scope_kind": "all", "scope_cameras": ["cam-a"]}, "scope_kind"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "future"),
    ]
    for body, message in cases:
        r = client.post("/api/v1/api-keys", json={"name": "bad", **body}, headers=h)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    naive = client.post("/api/v1/api-keys", json={"name": "t", "expires_at": "2999-01-01T00:00:00"}, headers=h)
    assert naive.status_code == 422


def test_api_key_expiry_revocation_deactivation_and_delete(client: TestClient, admin: str, db_url: str) -> None:
    h = bearer(admin)
    k = mint(client, admin, role="viewer", expires_at="2999-01-01T00:00:00Z")
    kh = {"X-API-Key": k["key"]}
    assert client.get("/api/v1/auth/me", headers=kh).status_code == 200
    sql(db_url, "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", k["id"])
    assert client.get("/api/v1/auth/me", headers=kh).status_code == 401
    r = client.patch(f"/api/v1/api-keys/{k['id']}", json={"expires_at": None}, headers=h)
    assert r.status_code == 200 and r.json()["expires_at"] is None
    assert client.get("/api/v1/auth/me", headers=kh).status_code == 200

    assert client.patch(f"/api/v1/api-keys/{k['id']}", json={"active": False}, headers=h).status_code == 200
    assert client.get("/api/v1/auth/me", headers=kh).status_code == 401
    assert client.patch(f"/api/v1/api-keys/{k['id']}", json={"active": True}, headers=h).status_code == 200
    assert client.get("/api/v1/auth/me", headers=kh).status_code == 200

    r = client.patch(f"/api/v1/api-keys/{k['id']}", json={"revoked_at": "2020-01-01T00:00:00Z"}, headers=h)
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert client.get("/api/v1/auth/me", headers=kh).status_code == 401
    r = client.patch(f"/api/v1/api-keys/{k['id']}", json={"revoked_at": None}, headers=h)
    assert r.status_code == 400 and "revoked" in r.json()["error"]

    r = client.patch(
        f"/api/v1/api-keys/{k['id']}",
        json={"capabilities": ["camera:read"], "scope_kind": "cameras", "scope_cameras": ["cam-z"]},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["scope_cameras"] == ["cam-z"] and not r.json()["legacy_role_expansion"]
    r = client.patch(f"/api/v1/api-keys/{k['id']}", json={"capabilities": ["registry:manage"]}, headers=h)
    assert r.status_code == 400 and "confirm_privileged" in r.json()["error"]
    r = client.patch(f"/api/v1/api-keys/{k['id']}", json={"scope_kind": "all"}, headers=h)
    assert r.status_code == 200 and r.json()["scope_cameras"] == [] and r.json()["scope_kind"] == "all"

    assert client.delete(f"/api/v1/api-keys/{k['id']}", headers=h).status_code == 204
    assert client.delete(f"/api/v1/api-keys/{k['id']}", headers=h).status_code == 404
    assert client.get("/api/v1/auth/me", headers=kh).status_code == 401
    actions = [
        a["action"]
        for a in sql(db_url, "SELECT action FROM audit_log WHERE target_id = $1 ORDER BY created_at", k["id"])
    ]
    assert actions[0] == "api_key_create" and actions[-1] == "api_key_delete" and "api_key_update" in actions


# --- audit ----------------------------------------------------------------------------------------


def test_camera_mutations_are_audited_with_subject_camera(client: TestClient, admin: str, db_url: str) -> None:
    k = mint(client, admin, name="ops-key", role="manager", confirm_privileged=True)
    kh = {"X-API-Key": k["key"]}
    assert (
        client.post(
            "/api/v1/cameras",
            json={"id": "aud-cam", "name": "Audit Cam", "vendor": "hikvision", "address": "10.0.0.9"},
            headers=kh,
        ).status_code
        == 201
    )
    assert client.patch("/api/v1/cameras/aud-cam", json={"name": "Renamed"}, headers=kh).status_code == 200
    assert client.delete("/api/v1/cameras/aud-cam", headers=bearer(admin)).status_code == 204
    rows = sql(db_url, "SELECT * FROM audit_log WHERE subject_camera_id = 'aud-cam' ORDER BY created_at")
    assert [r["action"] for r in rows] == ["camera_create", "camera_update", "camera_delete"]
    create, update, delete = rows
    assert (create["actor"], create["actor_name"], create["role"]) == (k["id"], "ops-key", "manager")
    assert (create["target_type"], create["target_id"]) == ("camera", "aud-cam")
    assert create["detail"]["camera_id"] == "aud-cam" and update["detail"]["fields"] == ["name"]
    assert delete["actor_name"] == ADMIN_USER and delete["role"] == "admin" and delete["id"].startswith("aud_")

    h = bearer(admin)
    listed = client.get("/api/v1/audit", params={"action": "camera_update"}, headers=h).json()
    assert listed[0]["target_id"] == "aud-cam" and {r["action"] for r in listed} == {"camera_update"}
    by_actor = client.get("/api/v1/audit", params={"actor": "ops-key"}, headers=h).json()
    assert {r["actor"] for r in by_actor} == {k["id"]}
    assert client.get("/api/v1/audit", params={"actor": k["id"]}, headers=h).json() == by_actor
    everything = client.get("/api/v1/audit", params={"limit": 100000}, headers=h).json()
    stamps = [r["created_at"] for r in everything]
    assert stamps == sorted(stamps, reverse=True) and len(everything) > 3
    assert len(client.get("/api/v1/audit", params={"limit": 0}, headers=h).json()) == 1
    assert len(client.get("/api/v1/audit", params={"limit": 2}, headers=h).json()) == 2
    window = client.get(
        "/api/v1/audit",
        params={"from": create["created_at"].isoformat(), "to": delete["created_at"].isoformat()},
        headers=h,
    ).json()
    assert {"camera_create", "camera_update", "camera_delete"} <= {r["action"] for r in window}
    assert client.get("/api/v1/audit", params={"from": "2999-01-01T00:00:00Z"}, headers=h).json() == []
    bad = client.get("/api/v1/audit", params={"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, headers=h)
    assert bad.status_code == 400
    assert client.get("/api/v1/audit", params={"from": "yesterday"}, headers=h).status_code == 422
    assert client.get("/api/v1/audit", params={"from": "2025-01-01T00:00:00"}, headers=h).status_code == 422
    assert client.get("/api/v1/audit", headers=kh).status_code == 200  # manager reads the audit log
    viewer = mint(client, admin, role="viewer")["key"]
    assert client.get("/api/v1/audit", headers={"X-API-Key": viewer}).status_code == 403
    assert len(audit_rows(db_url, "login")) >= 1


def test_a_failed_audit_write_never_fails_the_request(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    with start(url, settings_for(tmp_path)) as c:
        token = login(c)
        sql(url, "ALTER TABLE audit_log RENAME TO audit_log_gone")
        r = c.post(
            "/api/v1/cameras",
            json={"id": "cam-x", "name": "X", "vendor": "hikvision", "address": "10.0.0.1"},
            headers=bearer(token),
        )
        assert r.status_code == 201
        assert (
            c.post(
                "/api/v1/users", json={"username": "erin", "password": "erin-pass"}, headers=bearer(token)
            ).status_code
            == 201
        )
        metrics = c.get("/metrics", headers=bearer(token))
        assert metrics.status_code == 200
        assert "heldar_audit_write_failures_total 2.0" in metrics.text


# --- secrets never in clear -----------------------------------------------------------------------


def test_no_password_or_token_stored_or_logged(new_database, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    url = new_database()
    with start(url, settings_for(tmp_path)) as c:
        token = login(c)
        secret_pw = "Very-Secret-Pw-42"
        c.post("/api/v1/users", json={"username": "frank", "password": secret_pw}, headers=bearer(token))
        frank = login(c, "frank", secret_pw)
        c.post("/api/v1/auth/login", json={"username": "frank", "password": "Wrong-" + secret_pw})
        key = mint(c, token, name="bot")["key"]
        c.get("/api/v1/cameras", headers={"X-API-Key": key})
        c.get("/api/v1/cameras", headers=bearer("vos_" + "0" * 64))
        secrets = [ADMIN_PASSWORD, secret_pw, token, frank, key, token[4:], key[12:]]
        dump = ""
        for table in ("users", "sessions", "api_keys", "audit_log"):
            dump += str(sql(url, f"SELECT * FROM {table}"))
        for secret in secrets:
            assert secret not in dump
            assert secret not in caplog.text
        hashes = [r["password_hash"] for r in sql(url, "SELECT password_hash FROM users")]
        assert hashes and all(h.startswith("$argon2id$") for h in hashes)


# --- bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_writes_a_generated_password_to_a_private_file_and_never_prints_or_logs_it(
    new_database, tmp_path: Path, capsys, caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    url = new_database()
    off = settings_for(tmp_path, auth_enabled=False, bootstrap_admin_user=None, bootstrap_admin_password=None)
    asyncio.run(bootstrap_admin(off, url))
    assert sql(url, "SELECT count(*) AS n FROM users")[0]["n"] == 0
    on = settings_for(tmp_path, bootstrap_admin_user=None, bootstrap_admin_password=None)
    asyncio.run(bootstrap_admin(on, url))
    printed = capsys.readouterr().out
    path = on.data_dir / "bootstrap-admin-password"
    assert str(path) in printed and "'admin'" in printed
    assert (path.stat().st_mode & 0o777) == 0o600
    match = re.search(r"password: (\S+)", path.read_text())
    assert match
    password = match.group(1)
    assert password not in printed and password not in caplog.text
    asyncio.run(bootstrap_admin(on, url))
    assert capsys.readouterr().out == ""
    assert sql(url, "SELECT username, role FROM users") == [{"username": "admin", "role": "admin"}]
    with TestClient(create_app(on, url)) as c:
        assert login(c, "admin", password).startswith("vos_")


def test_bootstrap_from_configured_credentials_prints_nothing(new_database, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    asyncio.run(bootstrap_admin(settings_for(tmp_path), url))
    assert capsys.readouterr().out == ""
    assert sql(url, "SELECT username, role FROM users") == [{"username": ADMIN_USER, "role": "admin"}]


def test_auth_off_is_the_system_admin(db_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path, auth_enabled=False), db_url)) as c:
        me = c.get("/api/v1/auth/me", headers=bearer("vos_bogus")).json()
        assert me["kind"] == "system" and me["role"] == "admin"
        assert c.get("/metrics").status_code == 200


def test_auth_floor_runs_before_any_handler(client: TestClient) -> None:
    """Without a credential every /api/v1 route is 401, before body validation or lookups run."""
    bad_body = client.post("/api/v1/cameras", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_body.status_code == 401 and bad_body.json() == {"error": "authentication required"}
    assert client.get("/api/v1/no-such-route").status_code == 401
    bogus = client.get("/api/v1/cameras", headers={"Authorization": "Bearer vos_" + "0" * 64})
    assert bogus.status_code == 401
    assert client.post("/api/v1/auth/logout").status_code == 204  # exempt: idempotent, needs no session
    assert client.get("/healthz").status_code == 200
