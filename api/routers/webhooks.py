"""Webhook subscriptions: ``/api/v1/webhooks`` CRUD, a test delivery and the deliveries ledger.

Fleet endpoints: camera-scoped credentials are refused. The secret is write-only (``has_secret``). The
notifier that delivers runs as an asyncio task in each API process (see ``install``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, audit, get_pool, require_fleet
from heldar.aio import cancel_and_wait
from heldar.auth.capabilities import Principal
from heldar.errors import Invalid, Unavailable
from heldar.store import webhooks as store
from heldar.webhooks.notifier import Notifier, NotifierPolicy
from heldar.webhooks.ssrf import UnsafeTarget, mask_target, parse_url, resolve_target

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
Severity = Literal["info", "warning", "critical"]
EventTypes = list[str]


class Webhook(BaseModel):
    id: str = Field(description="The subscription's id (`whk_...`).")
    name: str = Field(description="A name for people.")
    url: str = Field(description="Where events are POSTed.")
    event_types: list[str] = Field(
        description="Event types delivered: exact types, prefixes ending in `*`, or `*` for all."
    )
    min_severity: str = Field(description="Only events of this severity or worse.")
    has_secret: bool = Field(description="Whether deliveries are signed (HMAC).")
    enabled: bool = Field(description="Whether events are delivered.")
    cursor_seq: int = Field(description="The last event delivered (its `seq`).")
    cursor_at: datetime | None = Field(description="When the cursor last moved.")
    attempts: int = Field(description="Failed attempts on the current event.")
    next_attempt_at: datetime | None = Field(description="When the current event is tried next.")
    last_error: str | None = Field(description="Why the last delivery failed.")
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it was last changed (UTC).")


class WebhookCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="A name for people.")
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Where events are POSTed (`http(s)://`; private addresses need allowing).",
    )
    event_types: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=100,
        description="Event types delivered: exact types, prefixes ending in `*`, or `*` for all.",
    )
    min_severity: Severity = Field("info", description="Only events of this severity or worse.")
    secret: str | None = Field(
        None, min_length=8, max_length=512, description="Signs each delivery (`X-Heldar-Signature`); write-only."
    )
    enabled: bool = Field(True, description="Whether events are delivered.")


class WebhookPatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=128, description="A name for people.")
    url: str | None = Field(None, min_length=1, max_length=2048, description="Where events are POSTed.")
    event_types: list[str] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Event types delivered: exact types, prefixes ending in `*`, or `*` for all.",
    )
    min_severity: Severity | None = Field(None, description="Only events of this severity or worse.")
    secret: str | None = Field(
        None, min_length=8, max_length=512, description="A new signing secret; omitted keeps it, null removes it."
    )
    enabled: bool | None = Field(None, description="Whether events are delivered.")


class Delivery(BaseModel):
    id: str = Field(description="The delivery attempt's id.")
    webhook_id: str = Field(description="The subscription.")
    event_id: str | None = Field(description="The event delivered.")
    event_seq: int | None = Field(description="Its `seq`.")
    event_type: str = Field(description="Its type (`webhook.test` for a test).")
    attempt: int = Field(description="Attempt number for this event.")
    ok: bool = Field(description="Whether the receiver answered 2xx.")
    status_code: int | None = Field(description="The receiver's HTTP status; null if none.")
    error: str | None = Field(description="Why it failed.")
    gave_up: bool = Field(description="True when this was the last attempt for the event.")
    duration_ms: int | None = Field(description="How long the attempt took, ms.")
    created_at: datetime = Field(description="When it was made (UTC).")


class TestResult(BaseModel):
    ok: bool = Field(description="Whether the receiver answered 2xx.")
    status: int | None = Field(description="The receiver's HTTP status; null if none.")
    error: str | None = Field(description="Why it failed.")
    delivery_id: str = Field(description="The recorded delivery.")


def _check_event_types(types: list[str]) -> list[str]:
    for t in types:
        if not t or len(t) > 128 or not all(c.isalnum() or c in "_*.:-" for c in t):
            message = "each entry is an event type, a prefix ending in *, or *"
            raise Invalid(f"event_types: {message}",
                          details=[{"field": "event_types", "message": message, "type": "value_error"}])  # fmt: skip
    return list(dict.fromkeys(types))


async def _check_url(url: str, state: AppState) -> None:
    try:
        parse_url(url)
        await resolve_target(url, allow_private=state.settings.webhook_allow_private)
    except UnsafeTarget as exc:
        raise Invalid(f"url: {exc}", details=[{"field": "url", "message": str(exc), "type": "unsafe_url"}]) from None


async def _audit(state: AppState, principal: Principal, action: str, hook_id: str, detail: dict[str, Any]) -> None:
    await audit(state, principal, action, "webhook", hook_id, detail)


MANAGE = "registry:manage"  # who may manage webhooks sees their full target URLs


def _shown(row: dict[str, Any], principal: Principal) -> Webhook:
    """The subscription as ``principal`` may see it: the full URL only for those who may manage webhooks."""
    return Webhook(**(row if principal.can(MANAGE) else {**row, "url": mask_target(row["url"])}))


@router.get("", response_model=list[Webhook])
async def list_webhooks(
    principal: Principal = require_fleet("events:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[Webhook]:
    """Every subscription; the target URL shows its host only, unless the caller may manage webhooks."""
    return [_shown(r, principal) for r in await store.list_hooks(pool)]


@router.post("", response_model=Webhook, status_code=201)
async def create_webhook(
    body: WebhookCreate,
    principal: Principal = require_fleet("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Webhook:
    """Subscribe; delivery starts from the newest event now (no backlog). The URL is SSRF-checked."""
    fields = body.model_dump()
    fields["event_types"] = _check_event_types(body.event_types)
    await _check_url(body.url, state)
    row = await store.create_hook(pool, fields, principal.id)
    await _audit(state, principal, "webhook_create", row["id"], {
        "name": body.name, "url": mask_target(body.url), "event_types": fields["event_types"],
        "min_severity": body.min_severity, "has_secret": body.secret is not None})  # fmt: skip
    return Webhook(**row)


@router.get("/{webhook_id}", response_model=Webhook)
async def get_webhook(
    webhook_id: str, principal: Principal = require_fleet("events:read"), pool: asyncpg.Pool = Depends(get_pool)
) -> Webhook:
    """One subscription; the target URL shows its host only, unless the caller may manage webhooks."""
    return _shown(await store.get_hook(pool, webhook_id), principal)


@router.patch("/{webhook_id}", response_model=Webhook)
async def patch_webhook(
    webhook_id: str,
    body: WebhookPatch,
    principal: Principal = require_fleet("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Webhook:
    """Edit; ``secret`` omitted keeps it, ``null`` clears it, a string sets it."""
    await store.get_hook(pool, webhook_id)  # 404 first
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None or k == "secret"}
    if "event_types" in changes:
        changes["event_types"] = _check_event_types(changes["event_types"])
    if "url" in changes:
        await _check_url(changes["url"], state)
    row = await store.update_hook(pool, webhook_id, changes)
    detail = {k: (mask_target(v) if k == "url" else v) for k, v in changes.items() if k != "secret"}
    if "secret" in changes:
        detail["secret"] = "cleared" if changes["secret"] is None else "set"
    await _audit(state, principal, "webhook_update", webhook_id, detail)
    return Webhook(**row)


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: str,
    principal: Principal = require_fleet("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """Remove a subscription and its delivery log. Audited."""
    await store.delete_hook(pool, webhook_id)
    await _audit(state, principal, "webhook_delete", webhook_id, {})
    return Response(status_code=204)


@router.post("/{webhook_id}/test", response_model=TestResult)
async def test_webhook(
    webhook_id: str,
    principal: Principal = require_fleet("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> TestResult:
    """Send one signed synthetic ``test`` event now and answer how the receiver took it."""
    await store.get_hook(pool, webhook_id)
    notifier: Notifier | None = state.extras.get("webhook_notifier")
    if notifier is None:
        notifier = Notifier(pool, _policy(state))
        try:
            result = await notifier.send_test(webhook_id)
        finally:
            await notifier.close()
    else:
        result = await notifier.send_test(webhook_id)
    await _audit(state, principal, "webhook_test", webhook_id, {"ok": result.ok, "status": result.status})
    return TestResult(ok=result.ok, status=result.status, error=result.error, delivery_id=result.delivery_id)


@router.get("/{webhook_id}/deliveries", response_model=list[Delivery])
async def list_webhook_deliveries(
    webhook_id: str,
    limit: int = Query(DEFAULT_LIMIT, description="At most this many (clamped to 1-1000)."),
    _: Principal = require_fleet("events:read"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[Delivery]:
    """The ledger, newest first; ``limit`` clamped to 1-1000."""
    await store.get_hook(pool, webhook_id)
    return [Delivery(**r) for r in await store.list_deliveries(pool, webhook_id, max(1, min(limit, MAX_LIMIT)))]


def _policy(state: AppState) -> NotifierPolicy:
    s = state.settings
    return NotifierPolicy(
        interval_s=s.webhook_interval_s,
        timeout_s=s.webhook_timeout_s,
        max_attempts=s.webhook_max_attempts,
        retry_base_s=s.webhook_retry_base_s,
        retry_max_s=s.webhook_retry_max_s,
        allow_private=s.webhook_allow_private,
    )


def install(state: AppState) -> None:
    """Run the notifier as an asyncio task of this API process (started and stopped with the app). It sweeps
    every ``HELDAR_WEBHOOK_INTERVAL_S`` and at once when the event listener reports new events."""
    if not state.settings.webhooks_enabled:
        return

    async def start(st: AppState) -> None:
        if st.pool is None:
            raise Unavailable("database pool not open")
        notifier = Notifier(st.pool, _policy(st), observer=st.extras.get("webhook_observer"))
        st.extras["webhook_notifier"] = notifier
        tasks = [asyncio.create_task(notifier.run(), name="heldar-webhook-notifier")]
        broadcaster = st.extras.get("event_broadcaster")
        if broadcaster is not None:
            tasks.append(asyncio.create_task(broadcaster.forward_wakes(notifier.wake), name="heldar-webhook-wake"))
        st.extras["webhook_tasks"] = tasks

    async def stop(st: AppState) -> None:
        for task in await cancel_and_wait(st.extras.pop("webhook_tasks", [])):
            logger.warning("webhooks: task %s did not end within 10 s of its cancel", task.get_name())
        notifier = st.extras.pop("webhook_notifier", None)
        if notifier is not None:
            await notifier.close()

    state.extras.setdefault("startup_hooks", []).append(start)
    state.extras.setdefault("shutdown_hooks", []).append(stop)
