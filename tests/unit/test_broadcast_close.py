"""Stopping the process ends every event stream: subscribers are woken with ``closed`` set."""

from __future__ import annotations

from heldar.events.broadcast import EventBroadcaster


async def test_close_subscribers_wakes_present_and_future_subscribers() -> None:
    broadcaster = EventBroadcaster("postgresql://unused/none")  # never started: no connection is made
    open_stream = broadcaster.subscribe()
    assert not open_stream.closed and not open_stream.wake.is_set()
    broadcaster.close_subscribers()
    assert open_stream.closed and open_stream.wake.is_set()
    late = broadcaster.subscribe()  # a request that arrives while stopping ends at once too
    assert late.closed and late.wake.is_set()
    broadcaster.publish(7)  # still delivered to whoever reads before ending
    assert open_stream.queue.get_nowait() == 7
    await broadcaster.stop()
