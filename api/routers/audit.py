"""The audit log: ``GET /api/v1/audit`` (manager+, fleet), newest first."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Query

from api.deps import get_pool, require_fleet
from api.openapi import errors
from heldar.auth.models import AuditEntry, Text, Timestamp
from heldar.errors import BadRequest
from heldar.store import audit as audit_store

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

DEFAULT_LIMIT = 200
MAX_LIMIT = 5000


@router.get(
    "",
    response_model=list[AuditEntry],
    dependencies=[require_fleet("registry:manage")],
    summary="List audit entries",
    responses=errors(e400="`from` is after `to`."),
)
async def list_audit(
    since: Timestamp | None = Query(None, alias="from", description="RFC 3339, inclusive"),
    until: Timestamp | None = Query(None, alias="to", description="RFC 3339, inclusive"),
    actor: Text | None = Query(None, max_length=256, description="principal id or name"),
    action: Text | None = Query(None, max_length=128, description="Only this action (`camera_create`, ...)"),
    limit: int = Query(DEFAULT_LIMIT, description="clamped to 1..5000"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[dict[str, Any]]:
    """Audit entries, newest first, filtered by time, actor and action; ``limit`` clamped to 1-5000."""
    if since is not None and until is not None and since > until:
        raise BadRequest("'from' must not be after 'to'")
    limit = max(1, min(MAX_LIMIT, limit))
    return await audit_store.list_audit(pool, since=since, until=until, actor=actor, action=action, limit=limit)
