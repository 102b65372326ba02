"""Without the setting, loopback receivers are refused at subscription time and again at delivery time."""

from __future__ import annotations

from heldar.webhooks.delivery import new_client, post_event


async def test_delivery_to_loopback_is_refused_without_the_setting() -> None:
    async with new_client(2.0) as client:
        result = await post_event(client, "http://127.0.0.1:9/hook", "test", b"{}", None, allow_private=False)
    assert not result.ok and result.status is None and "loopback" in (result.error or "")
