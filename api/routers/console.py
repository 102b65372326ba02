"""The operator console: ``GET /console`` (one HTML page) and its static files, ``GET /console/{asset}``.

Thin wiring over :mod:`heldar.console_assets`; the files live in ``api/console/``: plain HTML, CSS and
JavaScript modules (hls.js vendored) that talk to the public API only, logging in with the session cookie (or
an API key kept in the tab). The routes are public (the page holds no data; every read it makes is
authorised by the API itself) and every answer carries the console's strict Content-Security-Policy. ``/``
redirects to the console.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from api.deps import public
from heldar import console_assets
from heldar.errors import NotFound

logger = logging.getLogger(__name__)
router = APIRouter(tags=["console"], include_in_schema=False)

CONSOLE_ROOT = Path(__file__).resolve().parent.parent / "console"
ASSETS = console_assets.ConsoleAssets(CONSOLE_ROOT)


def _answer(asset: console_assets.Asset) -> Response:
    return Response(asset.body, media_type=asset.media_type, headers=console_assets.headers_for(asset))


@router.get("/", dependencies=[public()])
async def root() -> RedirectResponse:
    return RedirectResponse("/console", status_code=307, headers=console_assets.security_headers())


@router.get("/console", dependencies=[public()])
async def console_page() -> Response:
    return _answer(ASSETS.page())


@router.get("/console/{asset:path}", dependencies=[public()])
async def console_asset(asset: str) -> Response:
    found = ASSETS.get(asset)
    if found is None:
        raise NotFound("no such console file")
    return _answer(found)
