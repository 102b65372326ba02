"""The generated OpenAPI document is one a generator and a person can use: security schemes that match the
credential lookup, a summary and description on every operation, a description on every field, unique
readable operationIds, the ``{"error", "details"}`` schema on every error, and the real media types.

Each check is a function returning the problems it finds; the tests run them on the app's document (no
problems) and on a document with the fault planted (the problem is found), so none of them is vacuous.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.requests import Request

from api.app import create_app
from api.auth_wiring import FLOOR_EXEMPT, SESSION_COOKIE, presented_token
from api.openapi import API_KEY, BEARER, COOKIE, ERROR_SCHEMA, SECURED, SENDS
from config import load_settings

ERROR_REF = f"#/components/schemas/{ERROR_SCHEMA}"
PUBLIC_ROUTES = {("get", "/healthz"), ("get", "/readyz")} | {("post", p) for p in FLOOR_EXEMPT}
CAPABILITY_NOTE = re.compile(r"\*\*(Requires capability|Access:)")


def _app() -> FastAPI:
    return create_app(load_settings(data_dir=Path("/tmp/heldar-unused")), "postgresql://unused/unused")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return _app().openapi()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in doc["paths"].items() for method, op in item.items()]


# --- the checks --------------------------------------------------------------------------------------
def security_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    schemes = doc.get("components", {}).get("securitySchemes", {})
    if schemes.get(BEARER, {}) != {**schemes.get(BEARER, {}), "type": "http", "scheme": "bearer"}:
        problems.append("no HTTP Bearer scheme")
    if (schemes.get(API_KEY, {}).get("in"), schemes.get(API_KEY, {}).get("name")) != ("header", "X-API-Key"):
        problems.append("no X-API-Key header scheme")
    if (schemes.get(COOKIE, {}).get("in"), schemes.get(COOKIE, {}).get("name")) != ("cookie", SESSION_COOKIE):
        problems.append("no session-cookie scheme")
    for method, path, op in operations(doc):
        public = (method, path) in PUBLIC_ROUTES
        if public and op.get("security") != []:
            problems.append(f"{method} {path}: public but declares security")
        if not public:
            if not all(s in op.get("security", []) for s in SECURED):
                problems.append(f"{method} {path}: does not accept all three credentials")
            if not op.get("x-heldar-capability"):
                problems.append(f"{method} {path}: no required capability")
            elif not re.search(r"\*\*Requires capability\*\* .*`|any authenticated caller", op["description"]):
                problems.append(f"{method} {path}: capability not stated in the description")
    return problems


def description_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    for method, path, op in operations(doc):
        if not op.get("summary", "").strip():
            problems.append(f"{method} {path}: no summary")
        own = CAPABILITY_NOTE.split(op.get("description", ""))[0].strip()
        if len(own) < 15:
            problems.append(f"{method} {path}: no description of its own")
        for parameter in op.get("parameters", []):
            if not parameter.get("description"):
                problems.append(f"{method} {path}: parameter {parameter['name']} undescribed")
    for name, schema in doc["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                problems.append(f"schema {name}.{field}: no description")
    for tag in doc.get("tags", []):
        if not tag.get("description"):
            problems.append(f"tag {tag['name']}: no description")
    known = {t["name"] for t in doc.get("tags", [])}
    for method, path, op in operations(doc):
        problems += [f"{method} {path}: tag {t!r} has no description" for t in op.get("tags", []) if t not in known]
    return problems


def operation_id_problems(doc: dict[str, Any]) -> list[str]:
    problems, seen = [], {}
    for method, path, op in operations(doc):
        op_id = op.get("operationId", "")
        if not re.fullmatch(r"[a-z][a-z0-9_]{2,40}", op_id) or "api_v1" in op_id:
            problems.append(f"{method} {path}: operationId {op_id!r} is not readable")
        if op_id in seen:
            problems.append(f"operationId {op_id!r} on both {seen[op_id]} and {method} {path}")
        seen[op_id] = f"{method} {path}"
    return problems


def error_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    schemas = doc["components"]["schemas"]
    if "HTTPValidationError" in schemas:
        problems.append("FastAPI's {detail} validation schema is still there")
    error = schemas.get(ERROR_SCHEMA, {})
    if error.get("required") != ["error"] or "details" not in error.get("properties", {}):
        problems.append("the error schema is not {error, details?}")
    for method, path, op in operations(doc):
        responses = op.get("responses", {})
        for code, response in responses.items():
            if not code.isdigit() or int(code) < 400 or (path, code) == ("/readyz", "503"):
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") != ERROR_REF:
                problems.append(f"{method} {path} {code}: not the error schema")
        expected = {"503"} if path != "/healthz" else set()
        if (method, path) not in PUBLIC_ROUTES:
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if op.get("parameters") or "requestBody" in op:
            expected.add("422")
        if method in ("post", "put", "patch"):
            expected |= {"409", "413"}
        problems += [f"{method} {path}: {c} undocumented" for c in sorted(expected - set(responses))]
    return problems


def typing_problems(doc: dict[str, Any]) -> list[str]:
    """Every JSON success answer has a schema that is a model (no bare ``object``)."""
    problems = []
    for method, path, op in operations(doc):
        for code, response in op.get("responses", {}).items():
            if not code.startswith("2"):
                continue
            for media, content in response.get("content", {}).items():
                schema = content.get("schema", {})
                schema = schema.get("items", schema) if schema.get("type") == "array" else schema
                manifest = path.startswith("/media/clips/")  # a clip's manifest file is free-form JSON
                if media == "application/json" and "$ref" not in schema and not manifest:
                    problems.append(f"{method} {path} {code}: untyped JSON {schema}")
    return problems


def reference_problems(doc: dict[str, Any]) -> list[str]:
    """Every ``$ref`` names a schema in the document, and no internal marker is left behind."""
    text = json.dumps(doc)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    problems = [f"dangling $ref {name}" for name in sorted(refs - set(doc["components"]["schemas"]))]
    if SENDS in text:
        problems.append(f"{SENDS} left in the document")
    return problems


def media_type_problems(doc: dict[str, Any]) -> list[str]:
    expected = {
        ("get", "/api/v1/cameras/{camera_id}/frame"): "image/jpeg",
        ("get", "/api/v1/cameras/{camera_id}/snapshot"): "image/jpeg",
        ("get", "/media/evidence/{camera_id}/{name}"): "image/jpeg",
        ("get", "/api/v1/events/stream"): "text/event-stream",
        ("get", "/media/playback/{session_id}/index.m3u8"): "application/vnd.apple.mpegurl",
        ("get", "/media/live/{camera_id}/{file_name}"): "application/vnd.apple.mpegurl",
        ("get", "/media/recordings/{camera_id}/{file_name}"): "video/mp4",
        ("get", "/media/playback/{session_id}/{index}/init.mp4"): "video/mp4",
        ("get", "/metrics"): "text/plain",
    }
    problems = []
    for (method, path), media in expected.items():
        content = doc["paths"].get(path, {}).get(method, {}).get("responses", {}).get("200", {}).get("content", {})
        if media not in content:
            problems.append(f"{method} {path}: 200 is not {media} (documented: {sorted(content)})")
        if "application/json" in content:
            problems.append(f"{method} {path}: 200 still claims JSON")
    return problems


ALL_CHECKS = (
    security_problems,
    description_problems,
    operation_id_problems,
    error_problems,
    typing_problems,
    reference_problems,
    media_type_problems,
)


# --- the app's document passes ------------------------------------------------------------------------
@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_the_document_passes(doc: dict[str, Any], check: Any) -> None:
    assert check(doc) == []


def test_the_worker_sdk_is_typed(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/api/v1/ai/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AiIngest"}
    assert {"camera_id", "task_type", "detections", "frame_ticket"} <= set(
        doc["components"]["schemas"]["AiIngest"]["properties"]
    )
    assert "413" in doc["paths"]["/api/v1/ai/events"]["post"]["responses"]
    for path, method in (("/api/v1/ai/tasks", "get"), ("/api/v1/ai/leases", "post"), ("/api/v1/ai/samplers", "get")):
        assert doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]


def test_capabilities_are_the_routes_own(doc: dict[str, Any]) -> None:
    """Spot checks against what ``api.deps`` declares on the routes (derived, not copied)."""
    caps = {(m, p): op.get("x-heldar-capability") for m, p, op in operations(doc)}
    assert caps[("get", "/api/v1/users")] == "admin"
    assert caps[("get", "/metrics")] == "system:read"
    assert caps[("post", "/api/v1/ai/events")] == "ai:ingest"
    assert caps[("get", "/api/v1/cameras/{camera_id}/frame")] == "ai:frames"
    assert caps[("get", "/api/v1/auth/me")] == "authenticated"
    assert "Fleet-wide" in doc["paths"]["/api/v1/users"]["get"]["description"]
    assert "camera scope" in doc["paths"]["/api/v1/cameras/{camera_id}"]["get"]["description"]


@pytest.mark.parametrize(
    ("headers", "cookie", "expected"),
    [
        ({"authorization": "Bearer tok-b", "x-api-key": "tok-k"}, "tok-c", "tok-b"),  # Bearer first
        ({"x-api-key": "tok-k"}, "tok-c", "tok-k"),  # then X-API-Key
        ({}, "tok-c", "tok-c"),  # then the cookie
        ({"authorization": "Basic abc"}, None, None),  # nothing the schemes name
    ],
)
def test_the_schemes_are_the_lookup_the_app_does(
    doc: dict[str, Any], headers: dict[str, str], cookie: str | None, expected: str | None
) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    if cookie:
        raw.append((b"cookie", f"{SESSION_COOKIE}={cookie}".encode()))
    assert presented_token(Request({"type": "http", "headers": raw})) == expected
    schemes = doc["components"]["securitySchemes"]
    assert [schemes[BEARER]["scheme"], schemes[API_KEY]["name"], schemes[COOKIE]["name"]] == [
        "bearer",
        "X-API-Key",
        SESSION_COOKIE,
    ]


# --- each check finds its fault -----------------------------------------------------------------------
def _planted(doc: dict[str, Any], change: Any) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    change(broken)
    return broken


def _op(doc: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    return doc["paths"][path][method]  # type: ignore[no-any-return]


def _json_200(doc: dict[str, Any], path: str, schema: dict[str, Any]) -> None:
    _op(doc, path)["responses"]["200"]["content"] = {"application/json": {"schema": schema}}


def _undescribe_field(doc: dict[str, Any]) -> None:
    doc["components"]["schemas"]["AiIngest"]["properties"]["camera_id"].pop("description")


def _fastapi_403(doc: dict[str, Any]) -> None:
    fastapi_schema = {"$ref": "#/components/schemas/HTTPValidationError"}
    _op(doc, "/api/v1/cameras")["responses"]["403"]["content"] = {"application/json": {"schema": fastapi_schema}}


FAULTS = [
    (security_problems, lambda d: d["components"]["securitySchemes"].pop(API_KEY), "X-API-Key"),
    (security_problems, lambda d: _op(d, "/api/v1/users").pop("x-heldar-capability"), "no required capability"),
    (security_problems, lambda d: _op(d, "/healthz").update(security=SECURED), "public but declares"),
    (description_problems, lambda d: _op(d, "/api/v1/cameras").update(description="**Access:** x"), "its own"),
    (description_problems, _undescribe_field, "AiIngest.camera_id"),
    (description_problems, lambda d: d["tags"][0].pop("description"), "no description"),
    (operation_id_problems, lambda d: _op(d, "/api/v1/cameras").update(operationId="get_camera"), "on both"),
    (operation_id_problems, lambda d: _op(d, "/healthz").update(operationId="healthz_api_v1_get"), "readable"),
    (error_problems, lambda d: _op(d, "/api/v1/cameras")["responses"].pop("401"), "401 undocumented"),
    (error_problems, _fastapi_403, "not the error schema"),
    (typing_problems, lambda d: _json_200(d, "/api/v1/ai/tasks", {"type": "object"}), "untyped"),
    (reference_problems, lambda d: d["components"]["schemas"].pop("Lease"), "dangling $ref Lease"),
    (reference_problems, lambda d: _op(d, "/healthz")["responses"]["200"].update({SENDS: {}}), "left in"),
    (media_type_problems, lambda d: _json_200(d, "/api/v1/cameras/{camera_id}/frame", {}), "image/jpeg"),
]


@pytest.mark.parametrize(
    ("check", "plant", "found"), FAULTS, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(FAULTS)]
)
def test_each_check_finds_a_planted_fault(doc: dict[str, Any], check: Any, plant: Any, found: str) -> None:
    problems = check(_planted(doc, plant))
    assert any(found in p for p in problems), problems


def test_a_route_without_a_capability_or_description_is_caught() -> None:
    app = _app()

    @app.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    broken = app.openapi()
    assert any("forgotten" in p and "capability" in p for p in security_problems(broken))
    assert any("forgotten" in p and "description" in p for p in description_problems(broken))
    assert any("forgotten" in p and "untyped" in p for p in typing_problems(broken))
