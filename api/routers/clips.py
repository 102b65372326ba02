"""Clip export: ``POST /api/v1/cameras/{camera_id}/clip {from, to}`` and the files at ``/media/clips/…``.

Needs ``video:export`` and camera scope; audited. The overlapping segments are read-locked for the export
(retention cannot take them mid-copy), stream-copied by :mod:`heldar.media.clips` into
``<clips_dir>/<camera>/clip_…mp4``; the clip expires after ``HELDAR_CLIP_EXPIRY_HOURS`` (retention sweep).
400 for a bad window (``to <= from``, longer than ``HELDAR_CLIP_MAX_SECONDS``), 404 with no footage in it,
503 + Retry-After when no media-job slot frees within 10 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, audit, require, require_camera
from api.media_common import FootageHole, Window, media_slots, window
from api.openapi import errors, file_response, sends
from heldar.auth.capabilities import Principal
from heldar.errors import Forbidden, NotFound, Unavailable
from heldar.ids import new_id
from heldar.media import clips, integrity, signing
from heldar.media.binary import ffmpeg_exe
from heldar.media.safe_paths import MissingFile, UnsafePath, check_media_name, resolve_media_file
from heldar.store import cameras as camera_store
from heldar.store import media as media_store
from heldar.store.storage import read_locked

logger = logging.getLogger(__name__)
router = APIRouter(tags=["clips"])


def clip_url(camera_id: str, file_name: str) -> str:
    return f"/media/clips/{quote(camera_id, safe='')}/{quote(file_name, safe='')}"


class Clip(BaseModel):
    """An exported clip and where to fetch it and its signed manifest."""

    model_config = {"populate_by_name": True}

    id: str = Field(description="The clip's id (`clp_...`).")
    camera_id: str = Field(description="The camera it was cut from.")
    filename: str = Field(description="The clip's file name.")
    url: str = Field(description="Where to fetch the MP4 (`/media/clips/...`, needs `video:export`).")
    from_: datetime = Field(alias="from", description="Start of the requested window (UTC).")
    to: datetime = Field(description="End of the requested window (UTC).")
    requested_seconds: float = Field(description="Length of the requested window, seconds.")
    covered_seconds: float = Field(description="Seconds of the window that have footage in the clip.")
    gaps: list[FootageHole] = Field(description="Holes in the window with no footage.")
    size_bytes: int = Field(description="Size of the MP4 in bytes.")
    segment_count: int = Field(description="How many recorded segments were joined.")
    expires_at: datetime = Field(description="When retention deletes the clip (`HELDAR_CLIP_EXPIRY_HOURS`).")
    manifest_url: str = Field(description="Where to fetch the signed manifest (sources, hashes, signature).")


class SigningKey(BaseModel):
    """The public key that verifies clip manifests."""

    algorithm: str = Field(description="The signature algorithm (`Ed25519`).")
    public_key: str = Field(description="The raw public key, hex.")


def _view(row: dict[str, object]) -> dict[str, object]:
    camera_id, file_name = str(row["camera_id"]), str(row["file_name"])
    return {
        "id": row["id"], "camera_id": camera_id, "filename": file_name, "url": clip_url(camera_id, file_name),
        "from": row["from_time"], "to": row["to_time"], "requested_seconds": row["requested_seconds"],
        "covered_seconds": row["covered_seconds"], "gaps": row["gaps"], "size_bytes": row["size_bytes"],
        "segment_count": row["segment_count"], "expires_at": row["expires_at"],
        "manifest_url": clip_url(camera_id, file_name) + signing.MANIFEST_SUFFIX,
    }  # fmt: skip


async def _write_manifest(
    pool: Any, camera_id: str, clip_id: str, start: datetime, end: datetime, out: Path, segment_ids: list[str]
) -> None:
    """The clip's signed manifest next to it (``<clip>.manifest.json``): sources, hashes, chain links."""
    await integrity.link_pending(pool, camera_id)
    segments = await media_store.chain_entries(pool, camera_id, segment_ids)
    prev = await media_store.prev_chain_hashes(pool, camera_id, [s["chain_seq"] for s in segments if s["chain_seq"]])
    private, _ = await media_store.signing_key(pool, signing.new_key_pair)
    manifest = await asyncio.to_thread(
        signing.build_manifest, camera_id=camera_id, clip={"id": clip_id, "from": start, "to": end}, clip_path=out,
        segments=segments, prev_hashes=prev, private_key=private, signed_at=datetime.now(UTC),
    )  # fmt: skip
    path = out.with_name(out.name + signing.MANIFEST_SUFFIX)
    await asyncio.to_thread(path.write_text, json.dumps(manifest, indent=1, sort_keys=True), "utf-8")


@router.post(
    "/api/v1/cameras/{camera_id}/clip",
    status_code=201,
    summary="Export a time range as one MP4 clip",
    responses=sends(Clip, 201, "The clip, ready to fetch.")
    | errors(e503="No media-job slot freed within 10 s, or ffmpeg failed; retry shortly."),
)
async def export_clip(
    camera_id: str,
    body: Window,
    principal: Principal = require_camera("video:export"),
    state: AppState = Depends(app_state),
) -> dict[str, object]:
    """Stream-copies the recorded segments overlapping ``from``..``to`` into one MP4 with a signed manifest
    next to it (audited). The segments are read-locked while copied, so retention cannot take them. 400 for a
    bad window (``to <= from``, longer than ``HELDAR_CLIP_MAX_SECONDS``); 404 with no footage in it."""
    settings, pool = state.settings, state.pool
    assert pool is not None
    start, end = window(body, settings.clip_max_seconds)
    await camera_store.ensure_camera(pool, camera_id)
    clip_id = new_id("clp")
    async with media_slots(state).slot():
        async with read_locked(pool, camera_id, holder=f"clip:{clip_id}", start=start, end=end) as lock:
            segments = await media_store.segments_by_ids(pool, camera_id, lock.segment_ids)
            plan = clips.plan_clip(segments, start, end, settings.recordings_root / camera_id)
            if not plan.pieces:
                raise NotFound("no footage in that window")
            file_name = clips.clip_file_name(camera_id, start, clip_id)
            out = settings.clips_root / camera_id / file_name
            try:
                size = await clips.export_clip(plan, out, ffmpeg_exe())
            except (clips.ClipFailed, TimeoutError):
                raise Unavailable("clip export failed; retry shortly") from None
            await _write_manifest(pool, camera_id, clip_id, start, end, out, [p.segment_id for p in plan.pieces])
    row = await media_store.insert_clip(
        pool,
        {
            "id": clip_id, "camera_id": camera_id, "file_name": file_name, "from": start, "to": end,
            "requested_seconds": round(plan.requested_seconds, 3), "covered_seconds": round(plan.covered_seconds, 3),
            "gaps": [{"from": a.isoformat(), "to": b.isoformat()} for a, b in plan.gaps], "size_bytes": size,
            "segment_count": len(plan.pieces), "created_by": principal.id,
        },
        settings.clip_expiry_hours,
    )  # fmt: skip
    await audit(state, principal, "clip_export", "camera", camera_id,
                {"clip_id": clip_id, "from": start.isoformat(), "to": end.isoformat(), "size_bytes": size})  # fmt: skip
    logger.info("clip %s: %s %s..%s, %d segment(s), %d bytes", clip_id, camera_id, start, end, len(plan.pieces), size)
    return _view(row)


_CLIP_FILE: dict[str, Any] = {
    "response_class": Response,
    "summary": "Fetch an exported clip or its manifest",
    "responses": {
        200: {
            "description": "The clip (`video/mp4`) or, for a name ending `.manifest.json`, its signed manifest.",
            "content": {
                "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            },
        },
        **{k: v for k, v in file_response("video/mp4", "", ranges=True).items() if k != 200},
    },
}


@router.get("/media/clips/{camera_id}/{file_name:path}", operation_id="clip_file", **_CLIP_FILE)
@router.head("/media/clips/{camera_id}/{file_name:path}", operation_id="clip_file_head", **_CLIP_FILE)
async def clip_file(
    camera_id: str,
    file_name: str,
    request: Request,
    principal: Principal = require_camera("video:export"),
    state: AppState = Depends(app_state),
) -> Response:
    """An exported clip as a download (Range requests supported), or its manifest with ``.manifest.json``
    appended. 403 for a name that is not a clip of this camera; 404 for an unknown or expired clip."""
    manifest = file_name.endswith(signing.MANIFEST_SUFFIX)
    clip_name = file_name.removesuffix(signing.MANIFEST_SUFFIX)
    suffix = clips.CLIP_SUFFIX + signing.MANIFEST_SUFFIX if manifest else clips.CLIP_SUFFIX
    try:
        check_media_name(camera_id, file_name, suffixes=(suffix,))
        if not file_name.startswith("clip_"):
            raise UnsafePath("not a clip name")
    except UnsafePath as exc:
        raise Forbidden(f"refused: {exc}") from None
    assert state.pool is not None
    if await media_store.clip_for_file(state.pool, camera_id, clip_name) is None:
        raise NotFound("no such clip")
    try:
        path = resolve_media_file(state.settings.clips_root, camera_id, file_name, (suffix,))
        stat = os.stat(path)
    except UnsafePath as exc:
        raise Forbidden(f"refused: {exc}") from None
    except (MissingFile, FileNotFoundError):
        raise NotFound("no such clip") from None
    return FileResponse(
        path, media_type="application/json" if manifest else "video/mp4", stat_result=stat, filename=file_name,
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


@router.get("/api/v1/system/signing-key", response_model=SigningKey, summary="Get the clip-signing public key")
async def signing_key(_: Principal = require("video:export"), state: AppState = Depends(app_state)) -> dict[str, str]:
    """The public half of the key that signs clip manifests (verify offline with ``heldar verify``)."""
    assert state.pool is not None
    _, public = await media_store.signing_key(state.pool, signing.new_key_pair)
    return {"algorithm": "Ed25519", "public_key": public.hex()}
