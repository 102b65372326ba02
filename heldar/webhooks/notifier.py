"""The webhook notifier: each subscription walks ``events`` past its cursor and POSTs what matches.

At-least-once: the cursor moves (in the same transaction as the ledger row) only after a 2xx, or after
``max_attempts`` failures of one event, when the event is skipped and the ledger row says ``gave_up``. A
failure holds the cursor on that event and schedules the next attempt after a capped exponential delay,
so events of one subscription arrive in order. Each subscription is worked under a ``FOR UPDATE SKIP
LOCKED`` row lock, so several API processes may run notifiers without sending anything twice on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from heldar.aio import raise_if_cancelled, wait_set
from heldar.events.taxonomy import severity_at_least, type_matches
from heldar.ids import new_id
from heldar.store import webhooks as store
from heldar.webhooks.delivery import DeliveryResult, event_body, new_client, post_event, retry_delay

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotifierPolicy:
    interval_s: float = 5.0
    timeout_s: float = 10.0
    max_attempts: int = 5
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    allow_private: bool = False
    settle_s: float = 0.5
    batch: int = 100
    max_events_per_sweep: int = 100  # per subscription and sweep (the next sweep goes on)
    max_concurrent: int = 8  # subscriptions delivered at once


def matches(hook: dict[str, Any], event: dict[str, Any]) -> bool:
    return type_matches(hook.get("event_types") or ["*"], event["event_type"]) and severity_at_least(
        event["severity"], hook.get("min_severity") or "info"
    )


# Called once per POST with its outcome (delivered, failed, gave_up) and how long it took in seconds.
DeliveryObserver = Callable[[str, float], None]


class Notifier:
    def __init__(self, pool: asyncpg.Pool, policy: NotifierPolicy, observer: DeliveryObserver | None = None) -> None:
        self.pool = pool
        self.policy = policy
        self.observer = observer
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New events exist: sweep soon (after the settle delay) instead of at the next interval."""
        self._wake.set()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self.policy.timeout_s)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self) -> None:
        """Sweep forever (until cancelled); a failing sweep is logged and retried at the next interval."""
        while True:
            raise_if_cancelled()
            if await wait_set(self._wake, self.policy.interval_s):
                await asyncio.sleep(self.policy.settle_s)
            self._wake.clear()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("webhooks: sweep failed: %s: %s", exc.__class__.__name__, exc)

    async def sweep(self) -> int:
        """One pass over every due subscription, ``max_concurrent`` at once (a slow receiver holds only its
        own subscription); returns the number of POSTs made."""
        gate = asyncio.Semaphore(max(1, self.policy.max_concurrent))

        async def one(hook_id: str) -> int:
            async with gate:
                return await self.work(hook_id)

        hook_ids = await store.due_hooks(self.pool, datetime.now(UTC))
        return sum(await asyncio.gather(*(one(h) for h in hook_ids)))

    async def work(self, hook_id: str) -> int:
        """Deliver one subscription's pending events until caught up, failing, or at its per-sweep budget.

        Each POST is claim → post → record: the claim (a short transaction under the row lock) picks the next
        matching event and leases the subscription (``next_attempt_at`` pushed past the longest a POST may
        take), the POST runs with no transaction or connection held, and a second short transaction records
        the outcome and moves the cursor. A process that dies mid-POST leaves the lease to run out: the event
        is sent again (at-least-once), never skipped."""
        posts = 0
        while posts < self.policy.max_events_per_sweep:
            claimed = await self._claim(hook_id)
            if claimed is None:
                return posts
            hook, target, cursor, cursor_at = claimed
            try:
                result = await self.deliver(hook, target)
                posts += 1
                moved_on = await self._record(hook, target, result, cursor, cursor_at)
            except asyncio.CancelledError:
                # A clean stop mid-POST, or while the outcome is recorded, hands the lease back, so the next
                # process sends the event at once (at-least-once); a process that dies leaves the lease to run
                # out instead. Handing back after the record committed only makes the subscription due now.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release(hook["id"]))
                raise
            if not moved_on:
                return posts
        return posts

    async def _release(self, hook_id: str) -> None:
        async with self.pool.acquire() as conn:
            await store.lease_hook(conn, hook_id, datetime.now(UTC))

    def _lease_s(self) -> float:
        return self.policy.timeout_s * 2 + 30

    async def _claim(self, hook_id: str) -> tuple[dict[str, Any], dict[str, Any], int, datetime | None] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            now = datetime.now(UTC)
            hook = await store.lock_hook(conn, hook_id, now)
            if hook is None:
                return None
            cursor, cursor_at = hook["cursor_seq"], None
            while True:
                events = await store.events_past(conn, cursor, settle_s=self.policy.settle_s, limit=self.policy.batch)
                target = None
                for ev in events:
                    if matches(hook, ev):
                        target = ev
                        break
                    cursor, cursor_at = ev["seq"], ev["created_at"]
                if target is not None or len(events) < self.policy.batch:
                    break
            if target is None:
                if cursor != hook["cursor_seq"]:
                    await store.save_progress(
                        conn, hook["id"], cursor_seq=cursor, cursor_at=cursor_at, attempts=0, next_attempt_at=None,
                        last_error=hook["last_error"],
                    )  # fmt: skip
                return None
            await store.lease_hook(conn, hook["id"], now + timedelta(seconds=self._lease_s()))
            return hook, target, cursor, cursor_at

    async def _record(
        self,
        hook: dict[str, Any],
        target: dict[str, Any],
        result: DeliveryResult,
        cursor: int,
        cursor_at: datetime | None,
    ) -> bool:
        """Write the ledger row and move the cursor (or schedule the retry); True when the cursor moved on."""
        attempt = hook["attempts"] + 1
        gave_up = not result.ok and attempt >= self.policy.max_attempts
        self._observe("delivered" if result.ok else "gave_up" if gave_up else "failed", result)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.record_delivery(
                conn, delivery_id=result.delivery_id, webhook_id=hook["id"], event_id=target["id"],
                event_seq=target["seq"], event_type=target["event_type"], attempt=attempt, ok=result.ok,
                status_code=result.status, error=result.error, gave_up=gave_up, duration_ms=result.duration_ms,
            )  # fmt: skip
            if result.ok or gave_up:
                if gave_up:
                    logger.warning("webhooks: %s gave up on event %s after %d attempts: %s", hook["id"],
                                   target["seq"], attempt, result.error)  # fmt: skip
                await store.save_progress(conn, hook["id"], cursor_seq=target["seq"], cursor_at=target["created_at"],
                                          attempts=0, next_attempt_at=None,
                                          last_error=result.error if gave_up else None)  # fmt: skip
                return True
            delay = retry_delay(attempt, self.policy.retry_base_s, self.policy.retry_max_s)
            await store.save_progress(conn, hook["id"], cursor_seq=cursor, cursor_at=cursor_at, attempts=attempt,
                                      next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                                      last_error=result.error)  # fmt: skip
        logger.info("webhooks: %s event %s attempt %d failed (%s); retry in %.1f s", hook["id"], target["seq"],
                    attempt, result.error, delay)  # fmt: skip
        return False

    def _observe(self, outcome: str, result: DeliveryResult) -> None:
        if self.observer is not None:
            try:
                self.observer(outcome, result.duration_ms / 1000)
            except Exception as exc:  # a metrics fault must never hold a delivery
                logger.debug("webhooks: delivery observer failed: %s", exc.__class__.__name__)

    async def deliver(self, hook: dict[str, Any], event: dict[str, Any]) -> DeliveryResult:
        """One POST, bounded as a whole (httpx's timeout is per phase; a trickling receiver is cut here)."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await post_event(self.client, hook["url"], event["event_type"], event_body(event),
                                        hook.get("secret"), allow_private=self.policy.allow_private,
                                        message_id=str(event["id"]))  # fmt: skip
        except TimeoutError:
            return DeliveryResult(False, None, "timeout", int(self.policy.timeout_s * 1000), new_id("whd"))

    async def send_test(self, hook_id: str) -> DeliveryResult:
        """One signed synthetic ``test`` event, recorded in the ledger; the cursor does not move."""
        hook = await store.get_hook(self.pool, hook_id)
        hook["secret"] = await store.get_secret(self.pool, hook_id)
        event = {"id": str(uuid.uuid4()), "seq": None, "camera_id": None, "event_type": "test",
                 "severity": "info", "timestamp": datetime.now(UTC), "payload": {"webhook_id": hook_id}}  # fmt: skip
        result = await self.deliver(hook, event)
        await store.record_delivery(
            self.pool, delivery_id=result.delivery_id, webhook_id=hook_id, event_id=event["id"], event_seq=None,
            event_type="test", attempt=1, ok=result.ok, status_code=result.status, error=result.error,
            duration_ms=result.duration_ms,
        )  # fmt: skip
        return result
