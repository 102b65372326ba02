"""API keys: ``/api/v1/api-keys`` (admin, fleet). The plaintext key is returned once, at mint."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Response

from api.deps import AppState, app_state, audit, get_pool, require_fleet
from heldar.auth.capabilities import ROLE_CAPABILITIES, Principal
from heldar.auth.grants import GrantError, grant_from_row, validate_grant
from heldar.auth.models import ApiKeyCreate, ApiKeyCreated, ApiKeyPatch, ApiKeyView
from heldar.auth.tokens import hash_token, key_prefix, mint_api_key
from heldar.errors import BadRequest
from heldar.ids import new_id
from heldar.store import api_keys as key_store
from heldar.store.api_keys import ApiKey

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])


def _view(key: ApiKey) -> dict[str, Any]:
    grant, unknown = grant_from_row(key.role, key.capabilities, key.scope_kind, key.scope_cameras)
    if grant is not None:
        capabilities = sorted(grant.effective)
    elif key.capabilities is None:
        capabilities = sorted(ROLE_CAPABILITIES.get(key.role, frozenset()))
    else:
        capabilities = []
    cameras = key.scope_cameras if isinstance(key.scope_cameras, list) else []
    return {
        "id": key.id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "role": key.role,
        "active": key.active,
        "last_used_at": key.last_used_at,
        "created_at": key.created_at,
        "capabilities": capabilities,
        "legacy_role_expansion": key.capabilities is None,
        "unknown_capabilities": unknown,
        "scope_kind": key.scope_kind,
        "scope_cameras": [str(c) for c in cameras],
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "created_by": key.created_by,
    }


@router.get("", response_model=list[ApiKeyView])
async def list_api_keys(
    _: Principal = require_fleet("admin"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[dict[str, Any]]:
    """Every API key (never the key itself: only its prefix)."""
    return [_view(k) for k in await key_store.list_keys(pool)]


@router.post("", response_model=ApiKeyCreated, status_code=201)
async def create_api_key(
    body: ApiKeyCreate,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, Any]:
    """Mint a key with a role, optionally narrowed capabilities and a camera scope; the plaintext key is
    answered once and never stored. A privileged grant needs ``confirm_privileged``; 400 for a grant the
    role does not allow. Audited."""
    try:
        grant = validate_grant(
            body.role,
            body.capabilities,
            body.scope_kind,
            body.scope_cameras,
            confirm_privileged=body.confirm_privileged,
        )
    except GrantError as exc:
        raise BadRequest(str(exc)) from None
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise BadRequest("expires_at must be in the future")
    plaintext = mint_api_key()
    key = await key_store.insert_key(
        pool,
        key_id=new_id("key"),
        name=body.name,
        key_hash=hash_token(plaintext),
        key_prefix=key_prefix(plaintext),
        role=grant.role,
        capabilities=list(grant.capabilities) if grant.capabilities is not None else None,
        scope_kind=grant.scope_kind,
        scope_cameras=list(grant.scope_cameras),
        expires_at=body.expires_at,
        created_by=principal.id,
    )
    logger.info("api key %s (%s) minted by %s", key.id, key.key_prefix, principal.id)
    detail = {"name": key.name, "key_prefix": key.key_prefix, "expires_at": key.expires_at, **grant.as_detail()}
    await audit(state, principal, "api_key_create", "api_key", key.id, detail)
    return {**_view(key), "key": plaintext}


@router.get("/{key_id}", response_model=ApiKeyView)
async def get_api_key(
    key_id: str, _: Principal = require_fleet("admin"), pool: asyncpg.Pool = Depends(get_pool)
) -> dict[str, Any]:
    """One API key (its prefix, never the key)."""
    return _view(await key_store.get_key(pool, key_id))


@router.patch("/{key_id}", response_model=ApiKeyView)
async def patch_api_key(
    key_id: str,
    body: ApiKeyPatch,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, Any]:
    """Rename, disable, re-scope, change the expiry of or revoke a key (a revoked key cannot be reinstated:
    400). Audited."""
    current = await key_store.get_key(pool, key_id)
    given = body.model_fields_set - {"confirm_privileged"}
    changes: dict[str, Any] = {}
    for field in ("name", "active"):
        value = getattr(body, field)
        if field in given and value is not None:
            changes[field] = value
    if "expires_at" in given:
        changes["expires_at"] = body.expires_at
    if "revoked_at" in given:
        if body.revoked_at is None and current.revoked_at is not None:
            raise BadRequest("a revoked key cannot be reinstated; mint a new one")
        changes["revoked_at"] = body.revoked_at
    detail: dict[str, Any] = {"name": current.name, "fields": sorted(given)}
    if given & {"capabilities", "scope_kind", "scope_cameras"}:
        previous, _ = grant_from_row(current.role, current.capabilities, current.scope_kind, current.scope_cameras)
        scope_kind = body.scope_kind if body.scope_kind is not None else current.scope_kind
        if "scope_cameras" in given:
            cameras = body.scope_cameras or []
        elif scope_kind == "all":
            cameras = []
        else:
            cameras = current.scope_cameras if isinstance(current.scope_cameras, list) else []
        try:
            grant = validate_grant(
                current.role,
                body.capabilities if "capabilities" in given else current.capabilities,
                scope_kind,
                cameras,
                confirm_privileged=body.confirm_privileged,
                previously=previous.effective if previous is not None else frozenset(),
            )
        except GrantError as exc:
            raise BadRequest(str(exc)) from None
        changes["capabilities"] = list(grant.capabilities) if grant.capabilities is not None else None
        changes["scope_kind"] = grant.scope_kind
        changes["scope_cameras"] = list(grant.scope_cameras)
        detail.update(grant.as_detail())
    for field in ("active", "expires_at", "revoked_at"):
        if field in changes:
            detail[field] = changes[field]
    key = await key_store.update_key(pool, key_id, changes)
    await audit(state, principal, "api_key_update", "api_key", key_id, detail)
    return _view(key)


@router.delete("/{key_id}", status_code=204)
async def delete_api_key(
    key_id: str,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """Delete a key; requests with it are refused at once. Audited."""
    key = await key_store.delete_key(pool, key_id)
    logger.info("api key %s deleted by %s", key_id, principal.id)
    await audit(state, principal, "api_key_delete", "api_key", key_id, {"name": key.name, "key_prefix": key.key_prefix})
    return Response(status_code=204)
