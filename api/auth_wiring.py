"""Wires authentication and the audit log into the app: the authenticator hook, the auditor, the
audit-failure metric and the shared ``AuthService``."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import Counter

from api.deps import AppState, current_principal
from api.errors import error_response
from api.metrics import ASGIApp, Receive, Scope, Send
from config import Settings
from heldar.auth.audit import subject_camera_id
from heldar.auth.capabilities import Principal
from heldar.auth.lockout import LockoutPolicy
from heldar.auth.passwords import Argon2Params, Passwords
from heldar.auth.service import AuthService
from heldar.auth.sessions import SessionPolicy
from heldar.auth.throttle import LoginThrottle, ThrottlePolicy
from heldar.errors import Unauthorized
from heldar.ids import new_id
from heldar.secrets import sealing
from heldar.store import audit as audit_store
from heldar.store import secrets_at_rest as secrets_store
from heldar.store.database import is_unavailable

logger = logging.getLogger(__name__)

SESSION_COOKIE = "heldar_session"
CSRF_COOKIE = "heldar_csrf"
# The only /api/v1 routes reachable without a credential.
FLOOR_EXEMPT = frozenset({"/api/v1/auth/login", "/api/v1/auth/logout"})
AUDIT_TIMEOUT_S = 5.0


def presented_token(request: Request) -> str | None:
    """The credential on a request: ``Authorization: Bearer``, then ``X-API-Key``, then the cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    return request.cookies.get(SESSION_COOKIE) or None


def build_auth_service(settings: Settings) -> AuthService:
    params = Argon2Params(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
        parallelism=settings.password_hash_parallelism,
    )
    lockout = LockoutPolicy(settings.login_max_failures, settings.login_lockout_min)
    throttle = LoginThrottle(
        ThrottlePolicy(
            per_source_per_min=settings.login_rate_per_source_per_min,
            global_per_min=settings.login_rate_global_per_min,
            max_concurrent_hashes=settings.login_max_concurrent_hashes,
            failure_window_s=max(60.0, lockout.duration.total_seconds()),
        )
    )
    return AuthService(
        Passwords(params),
        SessionPolicy(settings.session_ttl_hours, settings.session_idle_timeout_min),
        lockout,
        throttle,
        trusted_source_days=settings.login_trusted_source_days,
    )


def request_source(request: Request) -> str:
    """The client address as the server saw it (uvicorn applies a trusted proxy's X-Forwarded-For)."""
    return request.client.host if request.client else "unknown"


def cookie_secure(request: Request, settings: Settings) -> bool:
    """``HELDAR_AUTH_COOKIE_SECURE`` when set, else whether this request came over HTTPS."""
    if settings.auth_cookie_secure is not None:
        return settings.auth_cookie_secure
    return request.url.scheme == "https"


def auth_service(state: AppState) -> AuthService:
    return state.extras["auth"]  # type: ignore[no-any-return]


class Auditor:
    """Best-effort audit writer: never raises; failures are logged and counted."""

    def __init__(self, state: AppState, failures: Counter) -> None:
        self._state = state
        self._failures = failures

    async def __call__(
        self,
        principal: Principal,
        action: str,
        target_type: str | None,
        target_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        try:
            clean: dict[str, Any] = json.loads(json.dumps(detail or {}, default=str))
            pool = self._state.pool
            if pool is None:
                raise RuntimeError("database pool not open")
            async with asyncio.timeout(AUDIT_TIMEOUT_S):
                await audit_store.insert_audit(
                    pool,
                    entry_id=new_id("aud"),
                    actor=principal.id,
                    actor_name=principal.name,
                    role=principal.role,
                    action=action,
                    target_type=target_type,
                    target_id=target_id,
                    detail=clean,
                    subject_camera_id=subject_camera_id(target_type, target_id, clean),
                )
        except Exception as exc:
            self._failures.inc()
            logger.warning(
                "audit write failed for %s on %s %s: %s", action, target_type, target_id, exc.__class__.__name__
            )


class AuthFloorMiddleware:
    """With auth on, no /api/v1 handler runs (not even body validation) without a principal (plain ASGI)."""

    def __init__(self, app: ASGIApp, *, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and self.state.settings.auth_enabled
            and path.startswith("/api/v1/")
            and path not in FLOOR_EXEMPT
        ):
            try:
                await current_principal(Request(scope, receive))  # cached in the scope for the route's own checks
            except Unauthorized as exc:
                await error_response(401, exc.message)(scope, receive, send)
                return
            except Exception as exc:
                if is_unavailable(exc):
                    await error_response(503, "database unavailable; retry shortly")(scope, receive, send)
                    return
                raise
        await self.app(scope, receive, send)


def install_auth(app: FastAPI) -> None:
    """Install the authenticator, the auditor and the audit-failure counter on ``app``."""
    state: AppState = app.state.heldar
    service = build_auth_service(state.settings)
    failures = Counter(
        "heldar_audit_write_failures_total",
        "Audit rows that could not be written (the request went on)",
        registry=app.state.metrics.registry,
    )

    async def authenticate(request: Request) -> Principal | None:
        token = presented_token(request)
        if token is None or state.pool is None:
            return None
        return await service.resolve(state.pool, token)

    state.extras["auth"] = service
    state.extras["auditor"] = Auditor(state, failures)
    state.extras["audit_failures"] = failures
    state.authenticator = authenticate

    app.add_middleware(AuthFloorMiddleware, state=state)
    if not state.settings.auth_enabled:
        logger.warning("AUTHENTICATION IS OFF: every caller is the system admin (demo use only)")
    install_secrets(state)


def install_secrets(state: AppState) -> None:
    """Configure this process's sealing key; at start, seal in place whatever is still clear or sealed
    under the previous key, or warn that secrets are stored in clear when there is no key."""
    sealer = sealing.configure(state.settings.secret_key, state.settings.secret_key_previous)

    async def reseal(st: AppState) -> None:
        assert st.pool is not None
        if not sealer.enabled:
            logger.warning(
                "HELDAR_SECRET_KEY is not set: camera passwords, webhook secrets and the frame-ticket key are "
                "stored in clear in the database (%s stored now)",
                await secrets_store.count_clear(st.pool),
            )
            return
        try:
            done = await secrets_store.reseal_all(st.pool, sealer)
        except sealing.SecretError as exc:
            logger.error("secrets at rest: %s; set HELDAR_SECRET_KEY_PREVIOUS to the key that sealed them", exc)
            return
        if any(done.values()):
            logger.warning("secrets at rest: sealed %s under the current HELDAR_SECRET_KEY", done)

    state.extras.setdefault("startup_hooks", []).append(reseal)


async def bootstrap_admin(settings: Settings, database_url: str) -> None:
    """At start, with auth on and no users yet, create the first admin from
    ``HELDAR_BOOTSTRAP_ADMIN_USER``/``_PASSWORD``; a generated password goes to a 0600 file in the data
    directory whose path is printed (never the password itself, never a log record)."""
    if not settings.auth_enabled:
        return
    from heldar.auth.bootstrap import announce, ensure_bootstrap_admin
    from heldar.store.database import connect

    conn = await connect(database_url, timeout=settings.db_connect_timeout_s)
    try:
        result = await ensure_bootstrap_admin(
            conn,
            build_auth_service(settings).passwords,
            username=settings.bootstrap_admin_user,
            password=settings.bootstrap_admin_password,
        )
    finally:
        await conn.close()
    if result is not None:
        announce(result, settings.data_dir)
