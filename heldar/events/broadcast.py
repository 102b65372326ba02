"""One LISTEN connection per process fanning ``heldar_events`` notifications out to in-process subscribers.

Every insert into ``events`` sends ``NOTIFY heldar_events, '<seq>'`` (a trigger, so every writer in every
process is covered). A subscriber gets an ``asyncio.Queue`` of seqs in commit order. A subscriber that does
not keep up is marked ``lagged`` (its queue stays bounded) and catches up from the table by cursor. The
connection is re-opened with backoff when it drops; subscribers are marked lagged then, since notifications
sent meanwhile are lost. ``close_subscribers()`` (the process is stopping) marks every subscriber, present and
future, ``closed`` and wakes it, so open streams end at once instead of holding the shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from heldar.aio import raise_if_cancelled, wait_set
from heldar.events.taxonomy import NOTIFY_CHANNEL
from heldar.store.database import connect

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[int] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    lagged: bool = False
    closed: bool = False  # the broadcaster is stopping: end the stream
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class EventBroadcaster:
    def __init__(self, database_url: str, *, reconnect_max_s: float = 10.0) -> None:
        self._url = database_url
        self._reconnect_max_s = reconnect_max_s
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.connected = asyncio.Event()
        self.closing = False
        # for /metrics: connections opened after the first one, and notifications received
        self.reconnects = 0
        self.notifications = 0
        self._connects = 0

    def subscribe(self) -> Subscription:
        sub = Subscription(closed=self.closing)
        self._subscribers.add(sub)
        if self.closing:
            sub.wake.set()
        return sub

    def close_subscribers(self) -> None:
        """End every stream: each subscriber is woken with ``closed`` set (so is any that subscribes later)."""
        self.closing = True
        for sub in list(self._subscribers):
            sub.closed = True
            sub.wake.set()

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def forward_wakes(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever new events are announced (until cancelled): how a consumer that reads the
        events table itself (the webhook notifier, the MQTT sink) hears of them without polling."""
        sub = self.subscribe()
        try:
            while True:
                await sub.wake.wait()
                sub.wake.clear()
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.lagged = False
                wake()
        finally:
            self.unsubscribe(sub)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heldar-event-listener")

    async def stop(self) -> None:
        self.close_subscribers()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._close()

    def publish(self, seq: int) -> None:
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(seq)
            except asyncio.QueueFull:
                sub.lagged = True
            sub.wake.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            seq = int(payload)
        except ValueError:
            logger.warning("events: ignoring a malformed notification payload")
            return
        self.notifications += 1
        self.publish(seq)

    def _mark_all_lagged(self) -> None:
        for sub in list(self._subscribers):
            sub.lagged = True
            sub.wake.set()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            raise_if_cancelled()
            try:
                self._conn = await connect(self._url)
                await self._conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self._mark_all_lagged()  # anything sent while we were not listening is read back by cursor
                self._connects += 1
                self.reconnects = self._connects - 1
                self.connected.set()
                delay = 0.5
                await self._closed(self._conn)
                logger.warning("events: LISTEN connection closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("events: LISTEN connection failed (%s); retrying in %.1f s",
                               exc.__class__.__name__, delay)  # fmt: skip
            finally:
                self.connected.clear()
                await self._close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_s)

    @staticmethod
    async def _closed(conn: asyncpg.Connection) -> None:
        """Return when ``conn`` is terminated (asyncpg calls the termination listener)."""
        gone = asyncio.Event()
        conn.add_termination_listener(lambda _c: gone.set())
        while not conn.is_closed() and not gone.is_set():
            await wait_set(gone, 5.0)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
