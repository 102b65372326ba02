"""SQL for API keys. Only the SHA-256 of a key and its 12-character display prefix are stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.errors import NotFound

Executor = asyncpg.Pool | asyncpg.Connection

_COLUMNS = (
    "id, name, key_prefix, role, capabilities, scope_kind, scope_cameras, active, expires_at, revoked_at,"
    " last_used_at, created_by, created_at"
)
_SETTABLE = frozenset({"name", "active", "capabilities", "scope_kind", "scope_cameras", "expires_at", "revoked_at"})


def _plausible_id(value: str) -> bool:
    """Ids we mint are short ASCII; anything else (NUL, lone surrogates, megabytes) cannot exist."""
    return 0 < len(value) <= 128 and value.isascii() and "\x00" not in value


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    key_prefix: str
    role: str
    capabilities: Any  # list[str] | None as stored (validated on use)
    scope_kind: str
    scope_cameras: Any
    active: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_by: str | None
    created_at: datetime


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(**dict(row))


async def insert_key(
    db: Executor,
    *,
    key_id: str,
    name: str,
    key_hash: str,
    key_prefix: str,
    role: str,
    capabilities: list[str] | None,
    scope_kind: str,
    scope_cameras: list[str],
    expires_at: datetime | None,
    created_by: str | None,
) -> ApiKey:
    row = await db.fetchrow(
        "INSERT INTO api_keys (id, name, key_hash, key_prefix, role, capabilities, scope_kind,"
        " scope_cameras, expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        f" RETURNING {_COLUMNS}",
        key_id,
        name,
        key_hash,
        key_prefix,
        role,
        capabilities,
        scope_kind,
        scope_cameras,
        expires_at,
        created_by,
    )
    return _key(row)


async def get_key(db: Executor, key_id: str) -> ApiKey:
    if not _plausible_id(key_id):
        raise NotFound("api key not found")
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
    if row is None:
        raise NotFound("api key not found")
    return _key(row)


async def find_by_hash(db: Executor, key_hash: str) -> ApiKey | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash)
    return None if row is None else _key(row)


async def list_keys(db: Executor) -> list[ApiKey]:
    return [_key(r) for r in await db.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")]


async def update_key(db: Executor, key_id: str, changes: dict[str, Any]) -> ApiKey:
    unknown = set(changes) - _SETTABLE
    assert not unknown, f"not settable: {unknown}"
    if not _plausible_id(key_id):
        raise NotFound("api key not found")
    if not changes:
        return await get_key(db, key_id)
    names = sorted(changes)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    row = await db.fetchrow(
        f"UPDATE api_keys SET {assignments} WHERE id = $1 RETURNING {_COLUMNS}",
        key_id,
        *[changes[n] for n in names],
    )
    if row is None:
        raise NotFound("api key not found")
    return _key(row)


async def delete_key(db: Executor, key_id: str) -> ApiKey:
    if not _plausible_id(key_id):
        raise NotFound("api key not found")
    row = await db.fetchrow(f"DELETE FROM api_keys WHERE id = $1 RETURNING {_COLUMNS}", key_id)
    if row is None:
        raise NotFound("api key not found")
    return _key(row)


async def touch_key(db: Executor, key_id: str) -> None:
    await db.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key_id)
