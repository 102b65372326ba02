"""Request dependencies: the app's shared state, the principal, capability and camera-scope checks.

Every route declares the capability it needs with ``require(...)`` (or ``require_camera(...)`` for
routes keyed by a camera id, which checks scope before the camera is looked up).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from fastapi import Depends, Request

from config import Settings
from heldar.auth.capabilities import SYSTEM, Principal
from heldar.errors import Forbidden, NotFound, Unauthorized
from heldar.ids import is_camera_id

logger = logging.getLogger(__name__)

Authenticator = Callable[[Request], Awaitable[Principal | None]]


@dataclass
class AppState:
    settings: Settings
    pool: asyncpg.Pool | None = None
    supervisor: Any = None  # SupervisorLink
    authenticator: Authenticator | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def app_state(request: Request) -> AppState:
    return request.app.state.heldar  # type: ignore[no-any-return]


def get_pool(request: Request) -> asyncpg.Pool:
    pool = app_state(request).pool
    assert pool is not None, "database pool not open"
    return pool


async def current_principal(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    state = app_state(request)
    if not state.settings.auth_enabled:
        principal: Principal | None = SYSTEM
    elif state.authenticator is None:
        principal = None
    else:
        principal = await state.authenticator(request)
    if principal is None:
        raise Unauthorized("authentication required")
    request.state.principal = principal
    return principal


def require(capability: str) -> Any:
    """Dependency: the caller must hold ``capability``."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.can(capability):
            raise Forbidden(f"role {principal.role!r} lacks capability {capability!r}")
        return principal

    dependency.capability = capability  # type: ignore[attr-defined]
    return Depends(dependency)


def require_camera(capability: str) -> Any:
    """Dependency for ``/cameras/{camera_id}/…``: capability, then camera scope (before any lookup)."""

    async def dependency(camera_id: str, principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.can(capability):
            raise Forbidden(f"role {principal.role!r} lacks capability {capability!r}")
        if not principal.sees_camera(camera_id):
            raise Forbidden("camera outside this credential's scope")
        if not is_camera_id(camera_id):  # no such id can exist; never send it to SQL
            raise NotFound(f"camera {camera_id[:64]!r} not found")
        return principal

    dependency.capability = capability  # type: ignore[attr-defined]
    return Depends(dependency)


def require_fleet(capability: str) -> Any:
    """Dependency for fleet-wide endpoints (users, keys, audit, metrics): ``capability``, and no
    camera-scoped credential, whatever it holds."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.can(capability):
            raise Forbidden(f"role {principal.role!r} lacks capability {capability!r}")
        if principal.camera_scope is not None:
            raise Forbidden("camera-scoped credentials cannot use fleet endpoints")
        return principal

    dependency.capability = capability  # type: ignore[attr-defined]
    dependency.fleet = True  # type: ignore[attr-defined]
    return Depends(dependency)


AUTHENTICATED = "authenticated"  # the ``.capability`` of routes open to any resolved principal


def authenticated() -> Any:
    """Dependency: any authenticated principal, no particular capability (``/auth/me``)."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        return principal

    dependency.capability = AUTHENTICATED  # type: ignore[attr-defined]
    return Depends(dependency)


def public() -> Any:
    """Dependency marking a route as deliberately open (health probes, login)."""

    async def dependency() -> None:
        return None

    dependency.capability = None  # type: ignore[attr-defined]
    return Depends(dependency)


async def audit(
    state: AppState,
    principal: Principal,
    action: str,
    target_type: str | None,
    target_id: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one audit row through the installed auditor (a no-op when none is installed)."""
    auditor = state.extras.get("auditor")
    if auditor is not None:
        await auditor(principal, action, target_type, target_id, detail or {})
