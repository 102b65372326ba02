"""A notifier stopped at any point of a delivery (mid-POST, or while it records the outcome) leaves the
subscription due at once for the next process: the lease it took is handed back, and the event is sent
again (at-least-once). Before this, a stop while the outcome was being recorded left the lease for
``2 x timeout + 30 s``, so the next process sent nothing for that long (the key-rotation test's flake)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from heldar.store import webhooks as store
from heldar.store.database import create_pool
from heldar.store.events import insert_event
from heldar.webhooks.delivery import DeliveryResult
from heldar.webhooks.notifier import Notifier, NotifierPolicy
from tests.integration.test_webhooks_api import Receiver

pytestmark = pytest.mark.integration


class Paused(Notifier):
    """The real notifier, held at one step so the test can stop it there (the delay a loaded database adds)."""

    def __init__(self, pool: Any, policy: NotifierPolicy, at: str) -> None:
        super().__init__(pool, policy)
        self.at = at
        self.reached = asyncio.Event()

    async def deliver(self, hook: dict[str, Any], event: dict[str, Any]) -> DeliveryResult:
        result = await super().deliver(hook, event)
        if self.at == "post":
            self.reached.set()
            await asyncio.sleep(60)
        return result

    async def _record(self, *args: Any) -> bool:
        if self.at == "record":
            self.reached.set()
            await asyncio.sleep(60)
        return await super()._record(*args)


@pytest.mark.parametrize("at", ["post", "record"])
def test_a_stop_anywhere_in_a_delivery_leaves_the_subscription_due(new_database, at: str) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    rx = Receiver()

    async def run() -> None:
        pool = await create_pool(url, max_size=2)
        try:
            hook = await store.create_hook(pool, {"name": "h", "url": rx.url("/ok"), "secret": "s"}, None)
            await insert_event(pool, "camera_offline", camera_id="cam")
            await asyncio.sleep(0.1)
            policy = NotifierPolicy(timeout_s=5, allow_private=True, settle_s=0.0)
            notifier = Paused(pool, policy, at)
            task = asyncio.create_task(notifier.work(hook["id"]))
            await asyncio.wait_for(notifier.reached.wait(), 10)
            leased = await pool.fetchval("SELECT next_attempt_at FROM webhook_subscriptions WHERE id = $1", hook["id"])
            assert leased > datetime.now(UTC)  # the lease is held while the POST and its record run
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await store.due_hooks(pool, datetime.now(UTC)) == [hook["id"]]
            # the next process sends the event again at once (at-least-once), and moves the cursor
            again = Notifier(pool, policy)
            assert await again.work(hook["id"]) == 1
            await again.close()
            await notifier.close()
            assert len(rx.on("/ok")) == 2
        finally:
            await pool.close()

    try:
        asyncio.run(run())
    finally:
        rx.close()
