"""Plain ASGI middleware in front of the whole app: request-body limits and CSRF protection.

* **Body limits** (security F3b): a declared ``Content-Length`` over the limit is answered 413 before a byte
  of the body is read; a streamed (chunked) body is counted as it arrives (Starlette's
  ``RequestBodyLimitMiddleware``) and refused with 413 the moment it passes the limit, so no route (not even
  the public login) ever buffers more than the limit.
* **CSRF** (F22): a mutation (POST/PUT/PATCH/DELETE) under ``/api/v1`` or ``/media`` authenticated by the
  session cookie alone (no ``Authorization``/``X-API-Key`` header) must carry ``X-Heldar-CSRF`` with the
  token the login answered (derived from the session), and a foreign ``Origin`` or a cross-site
  ``Sec-Fetch-Site`` is refused outright. Bearer and API-key callers are not affected: a browser never
  attaches those by itself.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from heldar.auth.tokens import csrf_token_for

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSRF_HEADER = "x-heldar-csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT = frozenset({"/api/v1/auth/login", "/api/v1/auth/logout"})


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key == "cookie" and key in out:
            out[key] += "; " + value.decode("latin-1")
        else:
            out[key] = value.decode("latin-1")
    return out


class BodyLimitMiddleware:
    """413 for bodies over ``limit_bytes`` (``limits`` maps exact paths to their own limit)."""

    def __init__(self, app: ASGIApp, *, limit_bytes: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit_bytes = limit_bytes
        self.limits = limits or {}
        self._default = RequestBodyLimitMiddleware(app, limit_bytes)
        self._streamed = {n: RequestBodyLimitMiddleware(app, n) for n in self.limits.values()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope.get("path", ""), self.limit_bytes)
        declared = _headers(scope).get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _send_error(send, 400, "invalid Content-Length")
                return
            if too_big:
                await _send_error(send, 413, f"request body larger than {limit} bytes")
                return
        # a streamed body is counted as it arrives: Starlette's limiter raises its 413 from ``receive``,
        # which FastAPI's body reading recognises (a plain exception there would become a 400)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._streamed.get(limit, self._default)(scope, receive, tracking_send)
        except BaseExceptionGroup as group:  # the 413 crossed a BaseHTTPMiddleware task group (a route read it)
            _, other = group.split(lambda e: isinstance(e, HTTPException) and e.status_code == 413)
            if other is not None or started:
                raise
            await _send_error(send, 413, f"request body larger than {limit} bytes")


class CsrfMiddleware:
    """Refuse cookie-authenticated mutations without the CSRF token or from a foreign origin."""

    def __init__(self, app: ASGIApp, *, session_cookie: str, trusted_origins: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.session_cookie = session_cookie
        self.trusted_origins = trusted_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method", "") in UNSAFE_METHODS:
            reason = self.refusal(scope)
            if reason is not None:
                logger.warning("CSRF check refused %s %s: %s", scope.get("method"), scope.get("path"), reason)
                await _send_error(send, 403, f"cross-site request refused: {reason}")
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        path = scope.get("path", "")
        if not (path.startswith(("/api/v1/", "/media/"))) or path in CSRF_EXEMPT:
            return None
        headers = _headers(scope)
        if headers.get("authorization") or headers.get("x-api-key"):
            return None  # not cookie-authenticated: a browser never adds these by itself
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            return None
        morsel = cookie.get(self.session_cookie)
        if morsel is None or not morsel.value:
            return None  # no credential at all: the auth floor answers 401
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            host = headers.get("host", "")
            own = {f"{scope.get('scheme', 'http')}://{host}", f"http://{host}", f"https://{host}"}
            if origin not in own and origin not in self.trusted_origins:
                return "foreign Origin"
        elif origin == "null":
            return "opaque Origin"
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return f"Sec-Fetch-Site {fetch_site[:20]}"
        presented = headers.get(CSRF_HEADER, "")
        if not presented or not hmac.compare_digest(presented, csrf_token_for(morsel.value)):
            return f"missing or wrong {CSRF_HEADER} header"
        return None


def install_request_guards(app: Any, settings: Any) -> None:
    """Add the guards as the outermost middleware: host check, then body limits, then CSRF."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from api.auth_wiring import SESSION_COOKIE

    app.add_middleware(CsrfMiddleware, session_cookie=SESSION_COOKIE)
    app.add_middleware(
        BodyLimitMiddleware,
        limit_bytes=settings.max_body_bytes,
        limits={"/api/v1/ai/events": settings.max_ingest_body_bytes},
    )
    hosts = [h.strip() for h in (settings.allowed_hosts or "").split(",") if h.strip()]
    if hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
