"""The OpenAPI document as a contract: security schemes, the error schema, per-route capabilities, tags.

FastAPI builds the paths and schemas from the routes and their models; ``install_openapi`` then adds what
it cannot know by itself, all of it derived from the routes rather than copied by hand:

* **Security.** Credentials are read by ``api.auth_wiring.presented_token`` in this order:
  ``Authorization: Bearer``, then ``X-API-Key``, then the ``heldar_session`` cookie. The three schemes
  document that lookup; every route that is not ``public()`` lists them (any one is enough), a public route
  lists none.
* **Capability.** The capability a route's ``api.deps`` dependency checks (``dependency.capability``) goes
  into its description and into ``x-heldar-capability``; fleet routes (``require_fleet``) and camera-keyed
  routes (``require_camera``) say how they treat camera-scoped credentials.
* **Errors.** Every handled error is ``{"error": ..., "details"?: [...]}`` (``api.errors``). FastAPI's
  ``HTTPValidationError`` (``{"detail": [...]}``) is replaced by that schema, and each operation documents
  the statuses the shared layers send: 401/403 (auth floor and capability), 404 (an id in the path), 409
  (a write that collides), 413 (body limits), 422 (validation), 503 (database or Ray unreachable, with
  ``Retry-After``). Routes add their own (429, 400, 406, ...) with ``responses=``.
* **operationIds** are the endpoint function names (``list_cameras``), made unique with the HTTP method
  where one function serves two methods.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api.auth_wiring import CSRF_COOKIE, SESSION_COOKIE

ERROR_SCHEMA = "Error"
SENDS = "x-heldar-sends"  # marks a response whose schema ``sends`` documents (removed from the document)
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}

BEARER, API_KEY, COOKIE = "bearerAuth", "apiKeyAuth", "sessionCookie"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "`Authorization: Bearer <token>`: a session token from `POST /api/v1/auth/login` or an API key. "
            "Looked at first."
        ),
    },
    API_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (`POST /api/v1/api-keys`). Looked at when there is no Bearer token.",
    },
    COOKIE: {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": (
            f"The session cookie that `POST /api/v1/auth/login` sets. Looked at last. A mutation "
            f"authenticated by the cookie alone must send `X-Heldar-CSRF` with the `{CSRF_COOKIE}` token "
            "the login answered."
        ),
    },
}
SECURED = [{BEARER: []}, {API_KEY: []}, {COOKIE: []}]

TAGS: list[dict[str, str]] = [
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
    {"name": "auth", "description": "Log in and out (session token and cookie), and who the caller is."},
    {"name": "users", "description": "User accounts: create, change role or password, unlock, delete."},
    {"name": "api-keys", "description": "API keys for integrations and workers, optionally scoped to cameras."},
    {"name": "audit", "description": "The audit log of every change and sensitive read."},
    {"name": "cameras", "description": "The camera registry: register, change and remove cameras."},
    {"name": "camera-health", "description": "Each camera's recorder state, and a live stream test."},
    {"name": "recordings", "description": "Recorded segments, the coverage timeline and the gaps in it."},
    {"name": "recording-gaps", "description": "Gaps being back-filled from the camera's own storage (ANR)."},
    {"name": "event-recording", "description": "Trigger a recording window from an outside event."},
    {"name": "schedules", "description": "Weekly recording schedules per camera."},
    {"name": "media", "description": "Recorded MP4 segments as files (Range requests supported)."},
    {"name": "clips", "description": "Export a time range as one MP4 clip with a signed manifest."},
    {"name": "snapshots", "description": "A JPEG still from a camera's recording or live stream."},
    {"name": "playback", "description": "HLS playback sessions over the recordings (playlist and fMP4)."},
    {"name": "liveview", "description": "The live HLS stream a camera's recorder writes."},
    {"name": "integrity", "description": "Per-segment integrity of a camera's recordings over a window."},
    {"name": "evidence", "description": "Evidence locks (kept past retention) and incidents on segments."},
    {"name": "system", "description": "The box overview (storage, cameras) and retention limits."},
    {"name": "ai-tasks", "description": "AI tasks per camera: what an analyzer looks for, at what rate."},
    {
        "name": "ai-workers",
        "description": (
            "The worker SDK: discover tasks, lease them, fetch frames with tickets, send detections and read them."
        ),
    },
    {"name": "zones", "description": "Zones on a camera's image, their enter/exit events and occupancy."},
    {"name": "events", "description": "The event log: list, types and a live Server-Sent Events stream."},
    {"name": "webhooks", "description": "Webhook subscriptions that receive events, and their deliveries."},
]


class ErrorDetail(BaseModel):
    """One problem with the request, for validation errors."""

    field: str | None = Field(None, description="The offending field, dotted (`query.limit`); null if none.")
    message: str = Field(description="What is wrong with it.")
    type: str | None = Field(None, description="A machine-readable kind (`missing`, `value_error`, ...).")


class ErrorBody(BaseModel):
    """Every error the API sends: a message, and the problems in detail for validation errors."""

    error: str = Field(description="A human-readable message; safe to show (never echoes a rejected secret).")
    details: list[ErrorDetail] | None = Field(None, description="Per-field problems (422 only).")


ERROR_TEXT: dict[int, str] = {
    400: "The request cannot be served as sent (a value the database refuses, an unknown reference).",
    401: "No valid credential (missing, expired or revoked).",
    403: "The credential lacks the capability, or the camera is outside its scope.",
    404: "The resource does not exist (or is not visible to this credential).",
    406: "The `Accept` header rules out every media type this route sends.",
    409: "The change collides with an existing resource or its current state.",
    413: "The request body is over the limit (`HELDAR_MAX_BODY_BYTES`).",
    422: "The request failed validation; `details` names each field.",
    429: "Rate or concurrency limit reached; retry after `Retry-After` seconds.",
    503: "The database or the cluster is unreachable; retry after `Retry-After` seconds.",
}
_BODY_MODELS: dict[str, type[BaseModel]] = {}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def readable_operation_id(route: APIRoute) -> str:
    """The endpoint's function name (``list_cameras``); a route serving two methods gets the method appended."""
    if route.operation_id:
        return route.operation_id
    methods = sorted(route.methods or ())
    return route.name if len(methods) <= 1 else f"{route.name}_{methods[0].lower()}"


def route_access(dependant: Any) -> tuple[list[str | None], bool, bool]:
    """(capabilities, fleet, camera-keyed) declared by the ``api.deps`` dependencies of a route; a capability
    of None is ``public()``."""
    caps: list[str | None] = []
    fleet = camera = False
    for dep in dependant.dependencies:
        call = dep.call
        if hasattr(call, "capability"):
            caps.append(call.capability)
            fleet = fleet or bool(getattr(call, "fleet", False))
            camera = camera or getattr(call, "__qualname__", "").startswith("require_camera.")
        sub_caps, sub_fleet, sub_camera = route_access(dep)
        caps.extend(sub_caps)
        fleet, camera = fleet or sub_fleet, camera or sub_camera
    return caps, fleet, camera


def _routes(app: FastAPI) -> list[Any]:
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.13x: included routers are lazy
    except ImportError:  # pragma: no cover - older FastAPI flattens routes into app.routes
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _access_text(caps: list[str | None], fleet: bool, camera: bool) -> str:
    named = sorted({c for c in caps if c})
    if not named:
        return "**Access:** public; no credential needed."
    if named == ["authenticated"]:
        return "**Access:** any authenticated caller."
    text = "**Requires capability** " + ", ".join(f"`{c}`" for c in named) + "."
    if fleet:
        text += " Fleet-wide: camera-scoped credentials are refused (403)."
    elif camera:
        text += " The camera must be inside the credential's camera scope (403 otherwise)."
    return text


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_TEXT.get(status, "Error."),
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


NO_DEPENDENCIES = frozenset({"/healthz"})  # answers without the database or the cluster


PATH_PARAMETERS = {
    "camera_id": "The camera's id.",
    "user_id": "The user's id.",
    "key_id": "The API key's id.",
    "zone_id": "The zone's id.",
    "webhook_id": "The webhook subscription's id.",
    "schedule_id": "The schedule's id.",
    "task_id": "The AI task's id.",
    "segment_id": "The recorded segment's id.",
    "incident_id": "The incident id segments are tagged with.",
    "gap_id": "The recording gap's id.",
    "lease_id": "The lease's id, as `POST /api/v1/ai/leases` answered it.",
    "session_id": "The playback session's id.",
    "file_name": "The file's name, as the listing's `url` gives it.",
    "name": "The evidence frame's name, as the zone event's `evidence_url` gives it.",
    "index": "The file's position in the session (from the playlist).",
    "fragment": "The fragment's position in the file (from the playlist).",
}


def _statuses(path: str, method: str, operation: dict[str, Any], public: bool) -> set[int]:
    statuses = set() if path in NO_DEPENDENCIES else {503}
    if not public:
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if method in ("post", "put", "patch"):
        statuses |= {400, 409, 413, 422}
    return statuses


def enrich(app: FastAPI, doc: dict[str, Any]) -> dict[str, Any]:
    """Add security, capabilities, error responses and tags to FastAPI's document (in place)."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas[ERROR_SCHEMA] = error_schema
    for name, model in _BODY_MODELS.items():  # request bodies a route reads itself (json_body)
        body_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub, sub_schema in body_schema.pop("$defs", {}).items():
            schemas.setdefault(sub, sub_schema)
        schemas.setdefault(name, body_schema)
    _share_field_descriptions(schemas)
    components["securitySchemes"] = SECURITY_SCHEMES
    doc["tags"] = TAGS
    access: dict[tuple[str, str], tuple[list[str | None], bool, bool]] = {}
    for route in _routes(app):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        for method in route.methods or ():
            access[(re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method.lower())] = route_access(dependant)
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            caps, fleet, camera = access.get((path, method), ([], False, False))
            public = bool(caps) and all(c is None for c in caps)
            operation.setdefault("security", [] if public else SECURED)  # a route may widen it (openapi_extra)
            named = sorted({c for c in caps if c})
            if named:
                operation["x-heldar-capability"] = named[0] if len(named) == 1 else named
            if caps:  # a route without a declared capability gets no access line (the doc test catches it)
                note = _access_text(caps, fleet, camera)
                description = operation.get("description", "").strip()
                operation["description"] = f"{description}\n\n{note}" if description else note
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and not parameter.get("description"):
                    parameter["description"] = PATH_PARAMETERS.get(parameter["name"], "")
            responses = operation.setdefault("responses", {})
            for response in responses.values():
                documented = response.pop(SENDS, None)
                if documented is not None:
                    response["content"] = {"application/json": {"schema": documented}}
            for status in sorted(_statuses(path, method, operation, public)):
                key = str(status)
                existing = responses.get(key)
                if existing is None or _is_fastapi_validation(existing):
                    responses[key] = _error_response(status)
            for key, response in responses.items():
                if key.isdigit() and int(key) >= 400 and "content" not in response:  # a route's own responses=
                    described = response.get("description")
                    response.update(_error_response(int(key)))
                    if described:
                        response["description"] = described
    return doc


_FAMILY_SUFFIX = re.compile(r"(Create|Created|Patch|View|Fields|Body|Request)$")


def _share_field_descriptions(schemas: dict[str, Any]) -> None:
    """A field undocumented in ``CameraView`` takes the description the same field has in ``CameraCreate`` or
    ``CameraPatch`` (models of one family, by name), when that family describes it one way only."""
    families: dict[str, dict[str, set[str]]] = {}
    for name, schema in schemas.items():
        family = families.setdefault(_FAMILY_SUFFIX.sub("", name), {})
        for field, prop in schema.get("properties", {}).items():
            if prop.get("description"):
                family.setdefault(field, set()).add(prop["description"])
    for name, schema in schemas.items():
        known = families.get(_FAMILY_SUFFIX.sub("", name), {})
        for field, prop in schema.get("properties", {}).items():
            if not prop.get("description") and len(known.get(field, ())) == 1:
                prop["description"] = next(iter(known[field]))


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(re.search(r"HTTPValidationError$", str(schema.get("$ref", ""))))


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` answer the enriched document (built once, cached like FastAPI's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = enrich(app, build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def file_response(media_type: str, description: str, *, ranges: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that sends a file or bytes of ``media_type`` (not JSON)."""
    ok: dict[str, Any] = {
        "description": description,
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }
    out: dict[int | str, dict[str, Any]] = {200: ok}
    if ranges:
        out[206] = {
            "description": "The requested byte range(s) (`Range: bytes=...`).",
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
        }
        out[400] = {"description": "A malformed `Range` header."}
        out[416] = {"description": "The range is outside the file; `Content-Range: bytes */<size>` says its size."}
    return out


def errors(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for route-specific error statuses (the error schema is attached by ``enrich``);
    ``described`` gives a status (``e429="..."``) its own text."""
    out: dict[int | str, dict[str, Any]] = {s: {"description": ERROR_TEXT.get(s, "Error.")} for s in statuses}
    for key, text in described.items():
        out[int(key.removeprefix("e"))] = {"description": text}
    return out


def sends(model: Any, status: int = 200, description: str = "Successful Response") -> dict[int | str, dict[str, Any]]:
    """``responses=`` documenting what a route that builds its own JSON (a ``dict``) sends: ``model`` (or
    ``list[model]``) replaces the bare ``object`` FastAPI infers, while the route keeps serialising exactly
    as before (the contract test checks the bytes against ``model``)."""
    item = typing.get_args(model)[0] if typing.get_origin(model) is list else model
    ref = {"$ref": f"#/components/schemas/{item.__name__}"}
    schema = {"type": "array", "items": ref} if item is not model else ref
    return {status: {"model": model, "description": description, SENDS: schema}}


def json_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """``openapi_extra=`` for a route that reads and validates its JSON body itself (to keep its own size
    limit): documents ``model`` as the request body."""
    _BODY_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }
