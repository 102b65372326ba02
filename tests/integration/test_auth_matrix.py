"""Every route of the app by every role: declared capability, 401 without credentials, 403 exactly when the
role lacks the capability; camera-scoped keys confined to their cameras and refused on fleet routes.

A route that declares no capability (``require``/``require_camera``/``require_fleet``/``authenticated``/
``public`` from ``api.deps``) fails here, so a new route cannot ship without one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth_wiring import bootstrap_admin
from api.deps import AUTHENTICATED
from config import load_settings
from heldar.auth.capabilities import CAPABILITIES, ROLE_CAPABILITIES, ROLES
from heldar.auth.grants import NOT_SCOPABLE

pytestmark = pytest.mark.integration

ADMIN_USER, ADMIN_PASSWORD = "matrix-admin", "Matrix-Admin-Pw1"
IN_SCOPE, OUT_OF_SCOPE, MISSING = "cam-a", "cam-b", "cam-ghost"
# Framework routes that are not part of the API surface (documentation); anything else must declare.
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
PUBLIC = "public"


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    capabilities: tuple[str, ...]  # declared by the route's dependencies (PUBLIC for public())
    fleet: bool


def _declared(dependant: Any) -> tuple[list[str], bool]:
    caps: list[str] = []
    fleet = False
    for dep in dependant.dependencies:
        call = dep.call
        if hasattr(call, "capability"):
            caps.append(PUBLIC if call.capability is None else call.capability)
            fleet = fleet or bool(getattr(call, "fleet", False))
        sub_caps, sub_fleet = _declared(dep)
        caps.extend(sub_caps)
        fleet = fleet or sub_fleet
    return caps, fleet


def _route_entries(app: FastAPI) -> list[tuple[str, set[str], Any]]:
    """(path, methods, dependant or None) of every route, across FastAPI's router layouts."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.13x: included routers are lazy
    except ImportError:  # pragma: no cover - older FastAPI flattens routes into app.routes
        return [(r.path, set(getattr(r, "methods", None) or ()), getattr(r, "dependant", None)) for r in app.routes]
    return [(c.path, set(c.methods or ()), getattr(c, "dependant", None)) for c in iter_route_contexts(app.routes)]


def route_specs(app: FastAPI) -> list[RouteSpec]:
    specs, undeclared = [], []
    for path, methods, dependant in _route_entries(app):
        if dependant is None:
            if path not in DOC_ROUTES:
                undeclared.append(f"{sorted(methods)} {path} (not an API route)")
            continue
        caps, fleet = _declared(dependant)
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            if not caps:
                undeclared.append(f"{method} {path}")
            else:
                specs.append(RouteSpec(method, path, tuple(caps), fleet))
    assert not undeclared, f"routes without a declared capability: {undeclared}"
    return specs


def role_allowed(role: str, spec: RouteSpec) -> bool:
    held = ROLE_CAPABILITIES[role]
    return all(c in (PUBLIC, AUTHENTICATED) or "admin" in held or c in held for c in spec.capabilities)


def concrete(path: str, camera_id: str = IN_SCOPE) -> str:
    path = path.replace("{camera_id}", camera_id)
    return re.sub(r"\{[^}]+\}", "x_not_there", path)


AUTH_DENIALS = re.compile(
    r"^(role '[a-z]+' lacks capability '[a-z:]+'|camera outside this credential's scope"
    r"|camera-scoped credentials cannot use fleet endpoints)$"
)


def call(client: TestClient, spec: RouteSpec, headers: dict[str, str], camera_id: str = IN_SCOPE) -> int:
    """The status, except that a 403 counts only when it is an authorisation refusal (routes may answer
    403 for their own reasons, e.g. the media plane refusing a file name)."""
    kwargs: dict[str, Any] = {"headers": headers}
    if spec.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    r = client.request(spec.method, concrete(spec.path, camera_id), **kwargs)
    assert r.status_code != 500, f"{spec.method} {spec.path} answered 500"
    if r.status_code == 403:
        try:
            message = r.json().get("error", "")
        except ValueError:
            message = ""
        return 403 if AUTH_DENIALS.match(str(message)) else 299
    return r.status_code


@pytest.fixture(scope="module")
def env(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("matrix"),
        auth_enabled=True,
        bootstrap_admin_user=ADMIN_USER,
        bootstrap_admin_password=ADMIN_PASSWORD,
        login_rate_per_source_per_min=0,  # one test client, one address
        max_body_bytes=8192,  # small limits, so every route can be sent one byte too many cheaply
        max_ingest_body_bytes=16384,
        password_hash_time_cost=1,
        password_hash_memory_kib=8,
        password_hash_parallelism=1,
    )
    asyncio.run(bootstrap_admin(settings, url))
    app = create_app(settings, url)
    with TestClient(app) as client:
        r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        admin = {"Authorization": f"Bearer {r.json()['token']}"}
        client.cookies.clear()
        keys: dict[str, dict[str, str]] = {}
        for role in ROLES:
            minted = client.post(
                "/api/v1/api-keys",
                json={"name": f"{role}-key", "role": role, "confirm_privileged": True},
                headers=admin,
            )
            assert minted.status_code == 201, minted.text
            keys[role] = {"X-API-Key": minted.json()["key"]}
        scoped_caps = sorted(set(CAPABILITIES) - NOT_SCOPABLE)
        scoped = client.post(
            "/api/v1/api-keys",
            json={
                "name": "scoped",
                "role": "manager",
                "capabilities": scoped_caps,
                "scope_kind": "cameras",
                "scope_cameras": [IN_SCOPE, MISSING + "-never"],
                "confirm_privileged": True,
            },
            headers=admin,
        )
        assert scoped.status_code == 201, scoped.text
        yield {
            "client": client,
            "app": app,
            "admin": admin,
            "keys": keys,
            "scoped": {"X-API-Key": scoped.json()["key"]},
        }


def ensure_cameras(client: TestClient, admin: dict[str, str]) -> None:
    for cam in (IN_SCOPE, OUT_OF_SCOPE):
        if client.get(f"/api/v1/cameras/{cam}", headers=admin).status_code == 404:
            r = client.post(
                "/api/v1/cameras",
                json={"id": cam, "name": cam, "vendor": "hikvision", "address": "127.0.0.1", "rtsp_port": 9},
                headers=admin,
            )
            assert r.status_code == 201, r.text


def test_every_route_declares_a_capability(env: dict[str, Any]) -> None:
    specs = route_specs(env["app"])
    paths = {(s.method, s.path) for s in specs}
    assert ("POST", "/api/v1/auth/login") in paths and ("GET", "/api/v1/audit") in paths
    assert all(c in (*CAPABILITIES, PUBLIC, AUTHENTICATED) for s in specs for c in s.capabilities)
    fleet = {s.path for s in specs if s.fleet}
    assert {"/metrics", "/api/v1/users", "/api/v1/api-keys", "/api/v1/audit"} <= fleet


def test_a_route_without_a_capability_is_caught(env: dict[str, Any]) -> None:
    app = create_app(load_settings(data_dir=Path("/tmp/heldar-unused")), "postgresql://unused/unused")

    @app.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(AssertionError, match="forgotten"):
        route_specs(app)


def test_role_by_route_matrix(env: dict[str, Any]) -> None:
    client, admin, keys = env["client"], env["admin"], env["keys"]
    failures = []
    for spec in route_specs(env["app"]):
        public = spec.capabilities == (PUBLIC,)
        ensure_cameras(client, admin)
        anonymous = call(client, spec, {})
        if public:
            assert anonymous not in (401, 403), (spec, anonymous)
        elif anonymous != 401:
            failures.append(f"{spec.method} {spec.path}: anonymous got {anonymous}, want 401")
        for role in ROLES:
            ensure_cameras(client, admin)
            status = call(client, spec, keys[role])
            allowed = role_allowed(role, spec)
            if allowed == (status == 403):
                failures.append(f"{spec.method} {spec.path}: {role} got {status}, want {'not ' * allowed}403")
    assert not failures, "\n".join(failures)


def test_scoped_key_is_confined_on_every_camera_route(env: dict[str, Any]) -> None:
    client, admin, scoped = env["client"], env["admin"], env["scoped"]
    failures = []
    for spec in route_specs(env["app"]):
        if spec.fleet:
            ensure_cameras(client, admin)
            status = call(client, spec, scoped)
            if status != 403:
                failures.append(f"{spec.method} {spec.path}: fleet route gave a scoped key {status}")
        if "{camera_id}" not in spec.path:
            continue
        for camera in (OUT_OF_SCOPE, MISSING):
            ensure_cameras(client, admin)
            status = call(client, spec, scoped, camera)
            if status != 403:
                failures.append(f"{spec.method} {spec.path} [{camera}]: scoped key got {status}")
        ensure_cameras(client, admin)
        if spec.method == "GET" and call(client, spec, scoped, IN_SCOPE) == 403:
            failures.append(f"{spec.method} {spec.path}: scoped key refused its own camera")
    assert not failures, "\n".join(failures)


def test_scoped_key_lists_and_writes(env: dict[str, Any]) -> None:
    client, admin, scoped = env["client"], env["admin"], env["scoped"]
    ensure_cameras(client, admin)
    assert {c["id"] for c in client.get("/api/v1/cameras", headers=admin).json()} >= {IN_SCOPE, OUT_OF_SCOPE}
    assert [c["id"] for c in client.get("/api/v1/cameras", headers=scoped).json()] == [IN_SCOPE]
    assert client.get(f"/api/v1/cameras/{IN_SCOPE}", headers=scoped).status_code == 200
    for cam in (OUT_OF_SCOPE, MISSING):
        r = client.get(f"/api/v1/cameras/{cam}", headers=scoped)
        assert r.status_code == 403 and r.json() == {"error": "camera outside this credential's scope"}
    assert client.patch(f"/api/v1/cameras/{OUT_OF_SCOPE}", json={"name": "x"}, headers=scoped).status_code == 403
    assert client.patch(f"/api/v1/cameras/{IN_SCOPE}", json={"name": "mine"}, headers=scoped).status_code == 200
    outside = client.post(
        "/api/v1/cameras",
        json={"id": "cam-new", "name": "n", "vendor": "hikvision", "address": "10.0.0.8"},
        headers=scoped,
    )
    assert outside.status_code == 403
    me = client.get("/api/v1/auth/me", headers=scoped).json()
    assert me["camera_scope"] == sorted([IN_SCOPE, MISSING + "-never"]) and "events:read" not in me["capabilities"]
    for path in ("/metrics", "/api/v1/audit"):  # it holds system:read and registry:manage, yet is refused
        r = client.get(path, headers=scoped)
        assert r.status_code == 403 and "fleet" in r.json()["error"], path
    for path in ("/api/v1/users", "/api/v1/api-keys"):  # a scoped key can never hold admin anyway
        assert client.get(path, headers=scoped).status_code == 403


def test_metrics_needs_system_read_but_health_probes_stay_public(env: dict[str, Any]) -> None:
    client, keys = env["client"], env["keys"]
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=keys["viewer"]).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)  # no supervisor here: not ready, but answers
    r = client.get("/api/v1/cameras", headers={"X-API-Key": "vok_" + "0" * 64})
    assert r.status_code == 401 and r.json() == {"error": "authentication required"}


# --- request guards on every route (security: CSRF, body limits) ------------------------------------
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
CSRF_REFUSED = "cross-site request refused"


def test_every_cookie_mutation_needs_the_csrf_token_and_the_same_origin(env: dict[str, Any]) -> None:
    client, admin = env["client"], env["admin"]
    r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    token, csrf = r.json()["token"], r.json()["csrf_token"]
    client.cookies.clear()
    cookie = {"Cookie": f"heldar_session={token}"}
    failures = []
    for spec in route_specs(env["app"]):
        if spec.method not in UNSAFE or spec.capabilities == (PUBLIC,):
            continue
        ensure_cameras(client, admin)
        path = concrete(spec.path)
        body = {"json": {}} if spec.method != "DELETE" else {}
        for headers, why in (
            (cookie, "no token"),
            ({**cookie, "X-Heldar-CSRF": csrf, "Origin": "http://evil.example"}, "foreign origin"),
            ({**cookie, "X-Heldar-CSRF": csrf, "Sec-Fetch-Site": "same-site"}, "same-site"),
        ):
            got = client.request(spec.method, path, headers=headers, **body)
            if got.status_code != 403 or CSRF_REFUSED not in got.text:
                failures.append(f"{spec.method} {spec.path} ({why}): {got.status_code}")
        ensure_cameras(client, admin)
        ok = client.request(spec.method, path, headers={**cookie, "X-Heldar-CSRF": csrf}, **body)
        if CSRF_REFUSED in ok.text:
            failures.append(f"{spec.method} {spec.path}: refused with the token")
    assert not failures, "\n".join(failures)
    client.cookies.clear()


def test_every_route_refuses_a_body_over_its_limit(env: dict[str, Any]) -> None:
    """A declared oversized body is refused before reading on every route; a streamed one wherever the route
    reads its body (a route that never reads it never buffers it either)."""
    client, admin = env["client"], env["admin"]
    reads_body = {p for p, _, dep in _route_entries(env["app"]) if dep is not None and dep.body_params}
    reads_body.add("/api/v1/ai/events")  # reads the raw body itself
    failures = []
    for spec in route_specs(env["app"]):
        if spec.method not in ("POST", "PUT", "PATCH") or spec.path == "/api/v1/auth/logout":
            continue
        limit = 16384 if spec.path == "/api/v1/ai/events" else 8192
        path = concrete(spec.path)
        declared = client.request(spec.method, path, content=b"{" + b" " * limit + b"}", headers=admin)

        def chunks(n: int) -> Any:
            for _ in range(n // 1024 + 2):
                yield b" " * 1024

        streamed = client.request(spec.method, path, content=chunks(limit), headers=admin)
        for how, got in (("content-length", declared), ("chunked", streamed)):
            if how == "chunked" and spec.path not in reads_body:
                continue
            if got.status_code != 413:
                failures.append(f"{spec.method} {spec.path} ({how}): {got.status_code}")
    assert not failures, "\n".join(failures)
