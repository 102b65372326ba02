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

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from api.deps import AppState, app_state, require_camera
from api.errors import error_response
from heldar.auth.capabilities import Principal
from heldar.errors import Forbidden, NotFound
from heldar.media.safe_paths import MissingFile, UnsafePath, resolve_media_file

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


@router.api_route("/recordings/{camera_id}/{file_name:path}", methods=["GET", "HEAD"])
async def recording_file(
    camera_id: str,
    file_name: str,
    request: Request,
    principal: Principal = require_camera("video:playback"),
    state: AppState = Depends(app_state),
) -> Response:
    try:
        path = resolve_media_file(state.settings.recordings_root, camera_id, file_name)
    except UnsafePath as exc:
        logger.warning("media: refused %r/%r for %s: %s", camera_id, file_name, principal.name, exc)
        raise Forbidden(f"refused: {exc}") from None
    except MissingFile:
        raise NotFound("no such recording") from None
    stat = os.stat(path)
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
