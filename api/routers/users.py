"""User accounts: ``/api/v1/users`` (admin, fleet)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Response

from api.auth_wiring import auth_service
from api.deps import AppState, app_state, audit, get_pool, require_fleet
from heldar.auth.capabilities import Principal
from heldar.auth.models import UserCreate, UserPatch, UserView
from heldar.ids import new_id
from heldar.store import users as user_store
from heldar.store.users import User

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/users", tags=["users"])


def _view(user: User) -> UserView:
    return UserView.model_validate(user, from_attributes=True)


@router.get("", response_model=list[UserView])
async def list_users(_: Principal = require_fleet("admin"), pool: asyncpg.Pool = Depends(get_pool)) -> list[UserView]:
    """Every user account (password hashes never shown)."""
    return [_view(u) for u in await user_store.list_users(pool)]


@router.post("", response_model=UserView, status_code=201)
async def create_user(
    body: UserCreate,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> UserView:
    """Create a user with a role (the password policy applies); 409 when the name is taken. Audited."""
    password_hash = await auth_service(state).hash_password(body.password)
    user = await user_store.insert_user(
        pool,
        user_id=new_id("usr"),
        username=body.username,
        password_hash=password_hash,
        role=body.role,
        display_name=body.display_name,
        active=body.active,
    )
    logger.info("user %s (%s) created by %s", user.id, user.role, principal.id)
    detail = {"username": user.username, "role": user.role, "active": user.active}
    await audit(state, principal, "user_create", "user", user.id, detail)
    return _view(user)


@router.get("/{user_id}", response_model=UserView)
async def get_user(
    user_id: str, _: Principal = require_fleet("admin"), pool: asyncpg.Pool = Depends(get_pool)
) -> UserView:
    """One user account."""
    return _view(await user_store.get_user(pool, user_id))


@router.patch("/{user_id}", response_model=UserView)
async def patch_user(
    user_id: str,
    body: UserPatch,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> UserView:
    """Change a user's password, role, display name or active state; a new password or deactivation ends
    the user's sessions; 400 for demoting or disabling the last active admin. Audited."""
    changes: dict[str, Any] = {}
    if body.password is not None:
        changes["password_hash"] = await auth_service(state).hash_password(body.password)
    if body.role is not None:
        changes["role"] = body.role
    if body.active is not None:
        changes["active"] = body.active
    if "display_name" in body.model_fields_set:
        changes["display_name"] = body.display_name
    user = await user_store.update_user(pool, user_id, changes)
    detail: dict[str, Any] = {
        "username": user.username,
        "fields": sorted(f for f in body.model_fields_set if f != "password"),
        "password_changed": "password_hash" in changes,
    }
    for field in ("role", "active"):
        if field in changes:
            detail[field] = changes[field]
    await audit(state, principal, "user_update", "user", user_id, detail)
    return _view(user)


@router.delete("/{user_id}", status_code=204)
async def delete_user(
    user_id: str,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """Delete a user and their sessions (400 for your own account or the last active admin). Audited."""
    user = await user_store.delete_user(pool, user_id, actor_id=principal.id)
    logger.info("user %s deleted by %s", user_id, principal.id)
    await audit(state, principal, "user_delete", "user", user_id, {"username": user.username})
    return Response(status_code=204)


@router.post("/{user_id}/unlock", response_model=UserView)
async def unlock_user(
    user_id: str,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> UserView:
    """Lift a lockout after failed logins. Audited."""
    user = await user_store.unlock_user(pool, user_id)
    await audit(state, principal, "user_unlock", "user", user_id, {"username": user.username})
    return _view(user)
