"""Bad input on every auth route: huge strings, wrong types, invalid JSON, SQL metacharacters,
NUL bytes and lone surrogates. Always a clean JSON 4xx (or a correct 2xx for harmless text), never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth_wiring import bootstrap_admin
from config import load_settings
from heldar.store.database import connect

pytestmark = pytest.mark.integration

ADMIN_USER, ADMIN_PASSWORD = "fuzz-admin", "Fuzz-Admin-Pw1"
HUGE = "A" * (1024 * 1024)
SQLI = "' OR 1=1 --"
NASTY_STRINGS = [HUGE, SQLI, "'; DROP TABLE users; --", "\x00", "a\x00b", "\ud800", "", " ", "%00", "../../etc/passwd"]
WRONG_TYPES: list[Any] = [None, 0, -1, 10**30, 1.5, True, [], ["x"], {}, {"$ne": ""}]

# (method, path, a valid-looking body, its fields)
BODY_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/auth/login", {"username": ADMIN_USER, "password": "wrong-password"}),
    (
        "POST",
        "/api/v1/users",
        {"username": "fuzzed", "password": "fuzzed-pass", "role": "viewer", "display_name": "F", "active": True},
    ),
    (
        "PATCH",
        "/api/v1/users/{user_id}",
        {"display_name": "F", "role": "viewer", "active": True, "password": "fuzzed-pass2"},
    ),
    (
        "POST",
        "/api/v1/api-keys",
        {
            "name": "fz",
            "role": "viewer",
            "capabilities": ["camera:read"],
            "scope_kind": "all",
            "scope_cameras": [],
            "expires_at": None,
            "confirm_privileged": False,
        },
    ),
    (
        "PATCH",
        "/api/v1/api-keys/{key_id}",
        {"name": "fz", "active": True, "capabilities": ["camera:read"], "scope_kind": "all", "expires_at": None},
    ),
]
PATH_ROUTES = [
    ("GET", "/api/v1/users/{id}"),
    ("PATCH", "/api/v1/users/{id}"),
    ("DELETE", "/api/v1/users/{id}"),
    ("POST", "/api/v1/users/{id}/unlock"),
    ("GET", "/api/v1/api-keys/{id}"),
    ("PATCH", "/api/v1/api-keys/{id}"),
    ("DELETE", "/api/v1/api-keys/{id}"),
]


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # lone surrogates become \ud800 escapes, as a hostile client sends them


FREE_TEXT = {"display_name": (0, 128), "password": (8, 1024), "name": (1, 128)}


def acceptable(field: str, bad: Any) -> bool:
    """Text that is merely odd (SQL metacharacters, dots) is valid in a free-text field, stored as data."""
    if (field, repr(bad)) in {("display_name", "None"), ("capabilities", "None"), ("scope_cameras", "[]")}:
        return True  # null display name, the role's default capabilities, no camera list
    if field not in FREE_TEXT or not isinstance(bad, str):
        return False
    low, high = FREE_TEXT[field]
    return low <= len(bad) <= high and "\x00" not in bad and "\ud800" not in bad


def check(r: Any, *, allow_ok: bool = False) -> None:
    assert r.status_code != 500 and r.status_code < 500, (r.request.method, r.request.url.path, r.text[:300])
    if not allow_ok:
        assert 400 <= r.status_code < 500, (r.request.method, str(r.request.url)[:200], r.status_code, r.text[:300])
    assert "application/json" in r.headers.get("content-type", "") or r.status_code == 204
    assert HUGE not in r.text


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("fuzz"),
        auth_enabled=True,
        bootstrap_admin_user=ADMIN_USER,
        bootstrap_admin_password=ADMIN_PASSWORD,
        login_max_failures=0,  # the fuzzing would lock the admin otherwise
        login_rate_per_source_per_min=0,  # one test client, one address
        password_hash_time_cost=1,
        password_hash_memory_kib=8,
        password_hash_parallelism=1,
    )
    asyncio.run(bootstrap_admin(settings, url))
    with TestClient(create_app(settings, url)) as client:
        token = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}).json()
        client.cookies.clear()
        admin = {"Authorization": f"Bearer {token['token']}"}
        user = client.post("/api/v1/users", json={"username": "target", "password": "target-pass"}, headers=admin)
        key = client.post("/api/v1/api-keys", json={"name": "target", "role": "viewer"}, headers=admin)
        yield {"client": client, "admin": admin, "url": url, "user_id": user.json()["id"], "key_id": key.json()["id"]}


def _path(env: dict[str, Any], path: str) -> str:
    return path.replace("{user_id}", env["user_id"]).replace("{key_id}", env["key_id"])


def test_bodies_with_bad_values_in_every_field(env: dict[str, Any]) -> None:
    client, admin = env["client"], env["admin"]
    for method, path, good in BODY_ROUTES:
        url = _path(env, path)
        for field in good:
            for bad in [*NASTY_STRINGS, *WRONG_TYPES]:
                if field in ("expires_at",) and bad is None:
                    continue
                if isinstance(good[field], bool) and isinstance(bad, bool):
                    continue  # a boolean for a boolean field is valid input
                body = {**good, field: bad}
                if "username" in body and path.endswith("/users"):
                    body["username"] = f"u{abs(hash((field, repr(bad)))) % 10**8}" if field != "username" else bad
                r = client.request(
                    method, url, content=_json_bytes(body), headers={**admin, "Content-Type": "application/json"}
                )
                assert r.status_code < 500, (method, path, field, repr(bad)[:40])
                if not acceptable(field, bad):
                    assert 400 <= r.status_code < 500, (method, path, field, repr(bad)[:40], r.text[:200])
                check(r, allow_ok=True)


def test_invalid_json_and_wrong_shapes(env: dict[str, Any]) -> None:
    client, admin = env["client"], env["admin"]
    raw_bodies = [
        b"",
        b"{",
        b'{"username": ',
        b"null",
        b"[]",
        b'"string"',
        b"42",
        b"\xff\xfe\x00",
        b"{" * 10000,
        b'{"username": "a", "password": "b", "username": 5}',
        HUGE.encode(),
    ]
    for method, path, _ in BODY_ROUTES:
        for raw in raw_bodies:
            r = client.request(
                method, _path(env, path), content=raw, headers={**admin, "Content-Type": "application/json"}
            )
            check(r)
        r = client.request(
            method,
            _path(env, path),
            content=b"username=a&password=b",
            headers={**admin, "Content-Type": "application/x-www-form-urlencoded"},
        )
        check(r)
        r = client.request(method, _path(env, path), json={"unexpected": 1}, headers=admin)
        check(r)


def test_hostile_ids_in_paths(env: dict[str, Any]) -> None:
    client, admin = env["client"], env["admin"]
    for method, path in PATH_ROUTES:
        for bad in [SQLI, "'; DROP TABLE users; --", "%00", "%FF%FE", "%ED%A0%80", "x" * 5000, "usr_" + "0" * 32]:
            url = path.replace("{id}", bad)
            r = client.request(method, url, json={} if method in ("PATCH", "POST") else None, headers=admin)
            check(r)
            assert r.status_code in (404, 422), (url[:80], r.status_code)


def test_hostile_audit_queries(env: dict[str, Any]) -> None:
    client, admin = env["client"], env["admin"]
    for name in ("actor", "action"):
        for bad in [SQLI, "'; DROP TABLE audit_log; --", "\x00", "x" * 10000, "%00"]:
            r = client.get("/api/v1/audit", params={name: bad}, headers=admin)
            check(r, allow_ok=True)
            if r.status_code == 200:
                assert r.json() == []
    for bad in [SQLI, "2025-13-45T99:99:99Z", "x" * 10000, "\x00", "1e309", "2025-01-01"]:
        check(client.get("/api/v1/audit", params={"from": bad}, headers=admin))
        check(client.get("/api/v1/audit", params={"to": bad}, headers=admin))
    for bad in [SQLI, "1.5", "x", "9" * 400]:
        check(client.get("/api/v1/audit", params={"limit": bad}, headers=admin), allow_ok=bad == "9" * 400)


def test_hostile_credentials_are_a_plain_401(env: dict[str, Any]) -> None:
    client = env["client"]
    for token in [SQLI, "vok_" + SQLI, "vos_" + "0" * 64, "vok_" + "0" * 64, HUGE, "vok_" + HUGE, "\x7f", "é" * 100]:
        for headers in (
            {"Authorization": f"Bearer {token}"},
            {"X-API-Key": token},
            {"Cookie": f"heldar_session={token}"},
        ):
            try:
                encoded = {k: v.encode("ascii").decode("ascii") for k, v in headers.items()}
            except UnicodeEncodeError:
                continue
            r = client.get("/api/v1/auth/me", headers=encoded)
            assert r.status_code == 401 and r.json() == {"error": "authentication required"}
            check(client.post("/api/v1/auth/logout", headers=encoded), allow_ok=True)
    for bad_login in [
        {"username": SQLI, "password": SQLI},
        {"username": ADMIN_USER, "password": SQLI},
        {"username": ADMIN_USER + "' --", "password": ADMIN_PASSWORD},
    ]:
        r = client.post("/api/v1/auth/login", json=bad_login)
        assert r.status_code == 401 and r.json() == {"error": "invalid credentials"}


def test_nothing_was_damaged(env: dict[str, Any]) -> None:
    async def counts() -> dict[str, int]:
        conn = await connect(env["url"])
        try:
            return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in ("users", "api_keys")}
        finally:
            await conn.close()

    found = asyncio.run(counts())
    assert found["users"] >= 2 and found["api_keys"] >= 1
    r = env["client"].post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert r.status_code == 200


def test_made_up_methods_oversized_bodies_and_login_floods(new_database, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """Junk at the request layer: invented methods, lying or huge bodies, and a login flood from one address."""
    url = new_database()
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("fuzz-guards"), auth_enabled=True, bootstrap_admin_user=ADMIN_USER,
        bootstrap_admin_password=ADMIN_PASSWORD, login_rate_per_source_per_min=5, password_hash_time_cost=1,
        password_hash_memory_kib=8, password_hash_parallelism=1,
    )  # fmt: skip
    asyncio.run(bootstrap_admin(settings, url))
    with TestClient(create_app(settings, url)) as client:
        for method in ("XYZZY", "GETT", "M-SEARCH", "PROPFIND", "A" * 64):
            for path in ("/healthz", "/api/v1/cameras", "/api/v1/auth/login", "/metrics"):
                r = client.request(method, path)
                assert r.status_code in (401, 404, 405), (method, path, r.status_code)
        for body in (b"{" * 2_000_000, b"\x00" * 1_100_000, HUGE.encode() + b"x"):
            r = client.post("/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 413
        r = client.post("/api/v1/auth/login", content=b"{}", headers={"Content-Length": "999999999999"})
        assert r.status_code in (400, 413)
        r = client.post("/api/v1/auth/login", content=b"{}", headers={"Content-Length": "-1"})
        assert r.status_code in (400, 413, 422)
        codes = [client.post("/api/v1/auth/login", json={"username": SQLI, "password": SQLI}).status_code
                 for _ in range(8)]  # fmt: skip
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
