"""Every handled error is JSON ``{"error": ...}``; validation adds ``details``; 503 adds Retry-After."""

from __future__ import annotations

import logging
import math
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from heldar.errors import HeldarError, Invalid, TooManyRequests
from heldar.store.database import UNAVAILABLE_ERRORS, is_unavailable

logger = logging.getLogger(__name__)


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    """Field locations and messages only: the rejected input is never echoed (it may be a password)."""
    details = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        details.append({"field": ".".join(loc) or None, "message": msg, "type": err.get("type")})
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        first = details[0] if details else {"field": None, "message": "invalid request"}
        summary = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
        return error_response(422, f"validation failed: {summary}", details=details)

    @app.exception_handler(Invalid)
    async def _invalid(_: Request, exc: Invalid) -> JSONResponse:
        return error_response(422, exc.message, details=exc.details)

    @app.exception_handler(HeldarError)
    async def _domain(_: Request, exc: HeldarError) -> JSONResponse:
        response = error_response(exc.status, exc.message)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_response(exc.status_code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    for unavailable in UNAVAILABLE_ERRORS:

        @app.exception_handler(unavailable)
        async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
            logger.warning("database unavailable: %s", exc.__class__.__name__)
            return error_response(503, "database unavailable; retry shortly")

    @app.exception_handler(asyncpg.PostgresError)
    async def _postgres(request: Request, exc: asyncpg.PostgresError) -> JSONResponse:
        if is_unavailable(exc):
            logger.warning("database unavailable: %s", exc.__class__.__name__)
            return error_response(503, "database unavailable; retry shortly")
        if isinstance(exc, asyncpg.UniqueViolationError):
            return error_response(409, "resource already exists")
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            return error_response(400, "referenced resource does not exist")
        if isinstance(exc, asyncpg.DataError):  # SQLSTATE class 22: a value PostgreSQL cannot take
            return error_response(400, "invalid value in request")
        logger.error("database error on %s %s: %s", request.method, request.url.path, exc.__class__.__name__)
        return error_response(500, "internal error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled %s on %s %s", exc.__class__.__name__, request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error")
