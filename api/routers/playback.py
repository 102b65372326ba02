"""HLS playback sessions over recorded footage (no copy, no re-encode).

``POST /api/v1/cameras/{camera_id}/playback/sessions {from, to}`` (``video:playback`` + scope) read-locks the
window's segments for ``HELDAR_PLAYBACK_TTL_S`` and answers ``playlist_url``; ``DELETE
/api/v1/playback/sessions/{id}`` ends it early (the lock goes with it). The playlist
(``/media/playback/{id}/index.m3u8``), each file's init section (``/media/playback/{id}/{n}/init.mp4``) and
its fragments (``/media/playback/{id}/{n}/{k}.m4s``: the recorded bytes with only the decode times moved onto the
session's timeline, see :mod:`heldar.media.hls`) are served to the session's owner (credentials as for the API) or
to whoever holds the session's token (``?token=``, for players that cannot send headers; it lives as long as
the session). Anyone else gets 404 for a session, 401 for a wrong token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, current_principal, require, require_camera
from api.media_common import FootageHole, Window, window
from api.openapi import SECURED, errors, sends
from heldar.auth.capabilities import Principal
from heldar.errors import BadRequest, Forbidden, NotFound, Unauthorized
from heldar.ids import new_id
from heldar.media import clips, hls
from heldar.media.segment_names import segment_path
from heldar.store import cameras as camera_store
from heldar.store import media as media_store
from heldar.store.storage import acquire_read_lock, release_read_lock

logger = logging.getLogger(__name__)
router = APIRouter(tags=["playback"])

CAPABILITY = "video:playback"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def playback_access() -> Any:
    """Dependency: a ``?token=`` (checked against the session by the route) or a principal with the capability."""

    async def dependency(request: Request) -> Principal | None:
        if request.query_params.get("token"):
            return None
        principal = await current_principal(request)
        if not principal.can(CAPABILITY):
            raise Forbidden(f"role {principal.role!r} lacks capability {CAPABILITY!r}")
        return principal

    dependency.capability = CAPABILITY  # type: ignore[attr-defined]
    return Depends(dependency)


async def _session_for(state: AppState, session_id: str, principal: Principal | None, token: str | None) -> dict:
    assert state.pool is not None
    if len(session_id) > 64:
        raise NotFound("no such playback session")
    session = await media_store.get_session(state.pool, session_id)
    if principal is None:
        if session is None or not hmac.compare_digest(_hash(token or ""), session["token_hash"]):
            raise Unauthorized("invalid or expired playback token")
        return session
    if session is None or session["owner_id"] != principal.id or not principal.sees_camera(session["camera_id"]):
        raise NotFound("no such playback session")
    return session


async def _pieces(state: AppState, session: dict[str, Any]) -> list[tuple[int, clips.ClipPiece, dict[str, Any]]]:
    assert state.pool is not None
    camera_id = session["camera_id"]
    rows = await media_store.segments_by_ids(state.pool, camera_id, session["segment_ids"])
    plan = clips.plan_clip(rows, session["from_time"], session["to_time"], state.settings.recordings_root / camera_id)
    by_id = {r["id"]: r for r in rows}
    order = list(session["segment_ids"])
    return [(order.index(p.segment_id), p, by_id[p.segment_id]) for p in plan.pieces]


def _layouts(pieces: list[tuple[int, clips.ClipPiece, dict[str, Any]]]) -> list[hls.PlaylistFile]:
    files = []
    for index, piece, row in pieces:
        try:
            layout = hls.fmp4_layout(piece.path)
        except (hls.NotFragmented, OSError) as exc:
            logger.warning("playback: %s skipped (%s)", row["file_name"], exc)
            continue
        files.append(hls.PlaylistFile(index, row["start_time"], float(row["duration_s"]), layout,
                                      piece.inpoint, piece.outpoint))  # fmt: skip
    return files


def _playlist(
    pieces: list[tuple[int, clips.ClipPiece, dict[str, Any]]], token_q: str, files: list[hls.PlaylistFile]
) -> tuple[str, float, int]:
    after_gap = {pieces[i][0] for i in range(1, len(pieces))
                 if (pieces[i][1].start - pieces[i - 1][1].end).total_seconds() > clips.MIN_GAP_S}  # fmt: skip
    return hls.build_playlist(
        files,
        lambda i: f"{i}/init.mp4{'?' + token_q[1:] if token_q else ''}",
        lambda i, k, offset: f"{i}/{k}.m4s?o={round(offset * 1000)}{token_q}",
        after_gap,
    )


async def _segment_file(state: AppState, session: dict[str, Any], index: int) -> Any:
    ids = list(session["segment_ids"])
    if not 0 <= index < len(ids):
        raise NotFound("no such part")
    assert state.pool is not None
    rows = await media_store.segments_by_ids(state.pool, session["camera_id"], [ids[index]])
    if not rows:
        raise NotFound("no such part")
    path = segment_path(state.settings.recordings_root / session["camera_id"], rows[0]["file_name"])
    try:
        layout = await asyncio.to_thread(hls.fmp4_layout, path)
    except (hls.NotFragmented, OSError):
        raise NotFound("no such part") from None
    return path, layout


class PlaybackSession(BaseModel):
    """A playback session: the playlist to hand a player, and what it covers."""

    model_config = {"populate_by_name": True}

    id: str = Field(description="The session's id (`pbs_...`); `DELETE` it to end the session early.")
    camera_id: str = Field(description="The camera played back.")
    playlist_url: str = Field(description="The HLS playlist, with the session token in its query.")
    token: str = Field(description="The session's token, for players that cannot send headers (`?token=`).")
    from_: datetime = Field(alias="from", description="Start of the window (UTC).")
    to: datetime = Field(description="End of the window (UTC).")
    duration_s: float = Field(description="Seconds of footage in the playlist.")
    segment_count: int = Field(description="Recorded segments the playlist is made of.")
    part_count: int = Field(description="fMP4 parts in the playlist.")
    gaps: list[FootageHole] = Field(description="Holes in the window with no footage.")
    expires_at: datetime = Field(description="When the session and its read lock end (`HELDAR_PLAYBACK_TTL_S`).")


# The media routes take the owner's credentials or the session's ?token= (no credential then).
_TOKEN_ACCESS = {"security": [*SECURED, {}]}
_TOKEN = Query(None, description="The session's token (from `playlist_url`), instead of a credential.")


@router.post(
    "/api/v1/cameras/{camera_id}/playback/sessions",
    status_code=201,
    summary="Start an HLS playback session over a window",
    responses=sends(PlaybackSession, 201, "The session, ready to play."),
)
async def create_session(
    camera_id: str,
    body: Window,
    principal: Principal = require_camera(CAPABILITY),
    state: AppState = Depends(app_state),
) -> dict[str, Any]:
    """Read-locks the window's segments for ``HELDAR_PLAYBACK_TTL_S`` (retention keeps them) and answers the
    playlist URL; nothing is copied or re-encoded. 400 for a bad window (longer than
    ``HELDAR_MAX_PLAYBACK_SECONDS``), 404 with no footage in it."""
    pool = state.pool
    assert pool is not None
    start, end = window(body, state.settings.max_playback_seconds)
    await camera_store.ensure_camera(pool, camera_id)
    session_id = new_id("pbs")
    lock = await acquire_read_lock(
        pool, camera_id, holder=f"playback:{session_id}", start=start, end=end, ttl_s=state.settings.playback_ttl_s
    )
    try:
        rows = await media_store.segments_by_ids(pool, camera_id, lock.segment_ids)
        plan = clips.plan_clip(rows, start, end, state.settings.recordings_root / camera_id)
        if not plan.pieces:
            raise NotFound("no footage in that window")
        token = secrets.token_urlsafe(24)
        ids = [p.segment_id for p in plan.pieces]
        session = await media_store.insert_session(
            pool,
            {"id": session_id, "camera_id": camera_id, "owner_id": principal.id, "token_hash": _hash(token),
             "lock_id": lock.id, "from": start, "to": end, "segment_ids": ids, "expires_at": lock.expires_at},
        )  # fmt: skip
    except BaseException:
        await release_read_lock(pool, lock.id)
        raise
    pieces = await _pieces(state, session)
    _, duration, parts = _playlist(pieces, "", await asyncio.to_thread(_layouts, pieces))
    return {
        "id": session_id, "camera_id": camera_id,
        "playlist_url": f"/media/playback/{session_id}/index.m3u8?token={quote(token)}",
        "token": token, "from": start, "to": end, "duration_s": round(duration, 3), "segment_count": len(ids),
        "part_count": parts, "gaps": [{"from": a, "to": b} for a, b in plan.gaps], "expires_at": lock.expires_at,
    }  # fmt: skip


@router.delete(
    "/api/v1/playback/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    summary="End a playback session",
    responses=errors(400),
)
async def end_session(
    session_id: str, principal: Principal = require(CAPABILITY), state: AppState = Depends(app_state)
) -> Response:
    """Ends the caller's session and releases its read lock (404 for someone else's; 400 for a malformed id)."""
    pool = state.pool
    assert pool is not None
    if not session_id.startswith("pbs") or len(session_id) > 64:
        raise BadRequest("not a playback session id")
    session = await media_store.get_session(pool, session_id)
    if session is None or session["owner_id"] != principal.id or not principal.sees_camera(session["camera_id"]):
        raise NotFound("no such playback session")
    await media_store.delete_session(pool, session_id)
    await release_read_lock(pool, session["lock_id"])
    return Response(status_code=204)


@router.get(
    "/media/playback/{session_id}/index.m3u8",
    response_class=Response,
    summary="Fetch a session's HLS playlist",
    openapi_extra=_TOKEN_ACCESS,
    responses={
        200: {
            "description": "The HLS playlist (fMP4 parts; gaps marked as discontinuities).",
            "content": {"application/vnd.apple.mpegurl": {"schema": {"type": "string"}}},
        }
    },
)
async def playlist(
    session_id: str,
    request: Request,
    token: str | None = _TOKEN,
    principal: Principal | None = playback_access(),
    state: AppState = Depends(app_state),
) -> Response:
    """The session's playlist, for its owner or whoever has its token (401 for a wrong token, 404 otherwise)."""
    token = request.query_params.get("token")
    session = await _session_for(state, session_id, principal, token)
    pieces = await _pieces(state, session)
    text, _, _ = _playlist(pieces, f"&token={quote(token)}" if token else "", await asyncio.to_thread(_layouts, pieces))
    return Response(text, media_type="application/vnd.apple.mpegurl", headers={"Cache-Control": "private, no-store"})


@router.get(
    "/media/playback/{session_id}/{index}/init.mp4",
    response_class=Response,
    summary="Fetch the init section of one of a session's files",
    openapi_extra=_TOKEN_ACCESS,
    responses={
        200: {
            "description": "The file's fMP4 init section (`ftyp` + `moov`).",
            "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def init_section(
    session_id: str,
    index: int,
    request: Request,
    token: str | None = _TOKEN,
    principal: Principal | None = playback_access(),
    state: AppState = Depends(app_state),
) -> Response:
    """The init section of the session's ``index``-th file, as the playlist names it."""
    session = await _session_for(state, session_id, principal, request.query_params.get("token"))
    path, layout = await _segment_file(state, session, index)
    data = await asyncio.to_thread(_read_head, path, layout.init_size)
    return Response(data, media_type="video/mp4", headers=_HEADERS)


@router.get(
    "/media/playback/{session_id}/{index}/{fragment}.m4s",
    response_class=Response,
    summary="Fetch one fMP4 fragment of a session",
    openapi_extra=_TOKEN_ACCESS,
    responses={
        200: {
            "description": "The recorded fragment, its decode times moved onto the session's timeline.",
            "content": {"video/iso.segment": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
    | errors(400),
)
async def fragment(
    session_id: str,
    index: int,
    fragment: int,
    request: Request,
    o: int = Query(0, description="The timeline offset of this file in the session, milliseconds (from the playlist)."),
    token: str | None = _TOKEN,
    principal: Principal | None = playback_access(),
    state: AppState = Depends(app_state),
) -> Response:
    """One fragment of the session's ``index``-th file; the bytes are the recording's, only re-timed."""
    session = await _session_for(state, session_id, principal, request.query_params.get("token"))
    path, layout = await _segment_file(state, session, index)
    if not 0 <= fragment < len(layout.fragments) or not -(10**9) <= o <= 10**9:  # o < 0: a file cut at its start
        raise NotFound("no such part")
    try:
        data = await asyncio.to_thread(hls.fragment_bytes, path, layout, fragment, o / 1000)
    except OverflowError:
        raise BadRequest("offset out of range") from None
    return Response(data, media_type="video/iso.segment", headers=_HEADERS)


_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


def _read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)
