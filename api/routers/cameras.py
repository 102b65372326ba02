"""Camera registry routes: ``/api/v1/cameras``."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from fastapi import APIRouter, Depends, Response
from pydantic import ValidationError

from api.deps import AppState, app_state, audit, get_pool, require, require_camera
from heldar.auth.capabilities import Principal
from heldar.camera_urls import parse_cidrs, vet_camera_url
from heldar.errors import Forbidden, Invalid
from heldar.models.cameras import Camera, CameraCreate, CameraPatch, CameraView, RecordingDefaults
from heldar.storage.purge import purge_camera_dir
from heldar.store import cameras as camera_store
from heldar.store import storage as storage_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


def _defaults(state: AppState) -> RecordingDefaults:
    s = state.settings
    return RecordingDefaults(
        segment_seconds=s.default_segment_seconds,
        retention_hours=s.default_retention_hours,
        record_audio=s.default_record_audio,
    )


def _invalid(exc: ValueError) -> Invalid:
    if isinstance(exc, ValidationError):
        msgs = [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()]
    else:
        msgs = [str(exc)]
    return Invalid(f"validation failed: {msgs[0]}", [{"field": None, "message": m} for m in msgs])


@router.get("", response_model=list[CameraView])
async def list_cameras(
    principal: Principal = require("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[CameraView]:
    """Every registered camera the credential can see (a camera-scoped key sees its own); passwords
    are never shown and URLs are masked."""
    only = sorted(principal.camera_scope) if principal.camera_scope is not None else None
    return [c.view() for c in await camera_store.list_cameras(pool, only)]


@router.post("", response_model=CameraView, status_code=201)
async def create_camera(
    body: CameraCreate,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> CameraView:
    """Register a camera; its recorder starts when recording is on. ``id`` is derived from ``name`` when
    absent. 422 when there is no URL to record from; 409 when the id is taken; stream URLs outside
    ``HELDAR_CAMERA_ALLOWED_CIDRS`` are refused. Audited."""
    assert body.id is not None
    if not principal.sees_camera(body.id):
        raise Forbidden("camera outside this credential's scope")
    try:
        camera = Camera.from_create(body, _defaults(state))
    except ValueError as exc:
        raise _invalid(exc) from None
    await _vet_urls(state, camera)
    created = await camera_store.insert_camera(pool, camera)
    logger.info("camera %s created by %s", created.id, principal.name)
    await _after_change(state, principal, "camera_create", created.id)
    return created.view()


@router.get("/{camera_id}", response_model=CameraView)
async def get_camera(
    camera_id: str, _: Principal = require_camera("camera:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> CameraView:
    """One camera, password hidden and URLs masked."""
    return (await camera_store.get_camera(pool, camera_id)).view()


@router.patch("/{camera_id}", response_model=CameraView)
async def patch_camera(
    camera_id: str,
    body: CameraPatch,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> CameraView:
    """Change any subset of the fields (``null`` clears the optional ones); the supervisor is told at once
    and applies it to the recorder. Audited."""
    current = await camera_store.get_camera(pool, camera_id)
    try:
        updated = current.patched(body)
    except ValueError as exc:
        raise _invalid(exc) from None
    await _vet_urls(state, updated)
    saved = await camera_store.update_camera(pool, updated)
    await _after_change(state, principal, "camera_update", camera_id, sorted(body.model_fields_set))
    return saved.view()


@router.delete("/{camera_id}", status_code=204)
async def delete_camera(
    camera_id: str,
    principal: Principal = require_camera("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """Remove the camera, its recordings' index and files (409 while any of its footage is evidence-locked),
    after stopping its recorder. Audited."""
    # Rows first (409 while evidence is locked; a recorder still running can no longer index), then stop
    # the camera's actor, then its folder goes (renamed aside atomically): a re-used id starts empty.
    rows = await storage_store.delete_camera_rows(pool, camera_id)
    await _stop_recorder(state, camera_id)
    removed = await asyncio.to_thread(purge_camera_dir, state.settings.recordings_root, camera_id)
    logger.info("camera %s deleted by %s: %s segment rows, %s files", camera_id, principal.name,
                rows["segments"], removed["files"])  # fmt: skip
    await audit(state, principal, "camera_delete", "camera", camera_id,
                {"camera_id": camera_id, "segments": rows["segments"], "files": removed["files"],
                 "bytes": removed["bytes"]})  # fmt: skip
    return Response(status_code=204)


RETIRE_TIMEOUT_S = 30.0


async def _stop_recorder(state: AppState, camera_id: str) -> None:
    """Have the supervisor stop the camera's actor and wait until it is gone (best effort, bounded)."""
    link = state.supervisor
    if link is None:
        return
    try:
        retired = bool(await link.call("retire_camera", camera_id, RETIRE_TIMEOUT_S, timeout=RETIRE_TIMEOUT_S + 5))
    except Exception as exc:
        logger.warning("camera %s: retire_camera failed (%s); waiting for its actor", camera_id, exc.__class__.__name__)
        retired = False
    link.notify(camera_id)  # the row is gone: a reconcile also drops its samplers (or stops the actor)
    if retired:
        return
    import ray

    deadline = time.monotonic() + RETIRE_TIMEOUT_S
    while ray.is_initialized() and time.monotonic() < deadline:
        try:
            ray.get_actor(f"camera:{camera_id}", namespace=state.settings.ray_namespace)
        except ValueError:
            return
        await asyncio.sleep(0.25)
    logger.warning("camera %s: its actor is still there after %.0fs; removing its folder anyway", camera_id,
                   RETIRE_TIMEOUT_S)  # fmt: skip


async def _vet_urls(state: AppState, camera: Camera) -> None:
    """Security F8: every host the camera's stream and replay URLs reach, vetted like a webhook target."""
    allowed = parse_cidrs(state.settings.camera_allowed_cidrs)
    urls = (camera.stream_url("main", _password="x"), camera.stream_url("sub", _password="x"),
            camera.anr_replay_url_template)  # fmt: skip
    for url in filter(None, urls):
        try:
            await vet_camera_url(url, allowed)
        except ValueError as exc:
            raise _invalid(exc) from None


async def _after_change(
    state: AppState, principal: Principal, action: str, camera_id: str, fields: list[str] | None = None
) -> None:
    """Tell the supervisor, then write the audit row (when an auditor is installed)."""
    if state.supervisor is not None:
        state.supervisor.notify(camera_id)
    await audit(
        state,
        principal,
        action,
        "camera",
        camera_id,
        {"camera_id": camera_id, **({"fields": fields} if fields else {})},
    )
