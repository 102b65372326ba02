"""The media plane: ``/media/recordings/{camera_id}/{file_name}`` with HTTP Range support.

Each fetch authenticates like the API and needs ``video:playback`` plus camera scope (checked
before anything is looked up). The path check is :func:`heldar.media.safe_paths.resolve_media_file`:
traversal, escapes, non-segment names and symlinks are refused with 403 and never touch a file
outside ``<recordings_root>/<camera_id>/``. Ranges are served by starlette's ``FileResponse``
(206, multipart for several ranges, ``If-Range``); a malformed or unsatisfiable Range is answered
here first so that it comes back as the API's JSON error (400, or 416 with ``Content-Range``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from api.deps import AppState, app_state, require_camera
from api.errors import error_response
from api.openapi import file_response
from heldar.auth.capabilities import Principal
from heldar.errors import Forbidden, NotFound
from heldar.media.safe_paths import MissingFile, UnsafePath, check_media_name, resolve_media_file
from heldar.media.segment_names import day_dir_name, parse_segment_name
from heldar.store import storage as storage_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/media", tags=["media"])


def _range_problem(range_header: str | None, size: int) -> JSONResponse | None:
    """The JSON error for a Range header FileResponse would refuse, judged by FileResponse's own parser."""
    parse = getattr(FileResponse, "_parse_range_header", None)
    if range_header is None or parse is None:
        return None
    try:
        parse(range_header, size)
    except MalformedRangeHeader as exc:
        return error_response(400, f"bad Range header: {exc.content}")
    except RangeNotSatisfiable:
        response = error_response(416, "requested range not satisfiable")
        response.headers["Content-Range"] = f"bytes */{size}"
        return response
    return None


_FILE_ROUTE: dict[str, Any] = {
    "response_class": Response,
    "summary": "Fetch a recorded segment (MP4, Range requests)",
    "responses": file_response("video/mp4", "The segment file.", ranges=True),
}


@router.get("/recordings/{camera_id}/{file_name:path}", operation_id="recording_file", **_FILE_ROUTE)
@router.head("/recordings/{camera_id}/{file_name:path}", operation_id="recording_file_head", **_FILE_ROUTE)
async def recording_file(
    camera_id: str,
    file_name: str,
    request: Request,
    principal: Principal = require_camera("video:playback"),
    state: AppState = Depends(app_state),
) -> Response:
    """One indexed segment file (``file_name`` as the segment list's ``url`` names it), served with
    ``Range``/``If-Range`` support (206, multipart for several ranges). 403 for a name that is not a segment
    of this camera or escapes its folder; 404 when the index does not know it or it is gone from disk."""
    root = state.settings.recordings_root
    parsed = parse_segment_name(file_name)
    path = None
    try:
        check_media_name(camera_id, file_name)
        for day in ([day_dir_name(parsed.start)] if parsed else []) + [None]:  # day folder, then flat layout
            try:
                path = resolve_media_file(root, camera_id, file_name, day=day)
                break
            except MissingFile:
                continue
    except UnsafePath as exc:
        logger.warning("media: refused %r/%r for %s: %s", camera_id, file_name, principal.name, exc)
        raise Forbidden(f"refused: {exc}") from None
    # Only indexed footage is served: a file the index does not know (a deleted camera's, an orphan) is 404.
    pool = state.pool
    indexed = pool is not None and await storage_store.segment_for_file(pool, camera_id, file_name) is not None
    if path is None and indexed and pool is not None:
        # Indexed but gone from disk: forget the row (the hole shows in /timeline and /gaps), say so.
        if await storage_store.forget_missing_file(pool, camera_id, file_name):
            logger.warning("media: %s/%s is indexed but missing on disk; row removed", camera_id, file_name)
    if path is None or not indexed:
        raise NotFound("no such recording")
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise NotFound("no such recording") from None
    if request.headers.get("if-range") is None:
        problem = _range_problem(request.headers.get("range"), stat.st_size)
        if problem is not None:
            return problem
    return FileResponse(
        path,
        media_type="video/mp4",
        stat_result=stat,
        headers={"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"},
    )
