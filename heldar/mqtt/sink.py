"""The MQTT sink: publishes every event past its cursor, at least once, and keeps Home Assistant informed.

It runs as an asyncio task in each API process (like the webhook notifier). Only one process publishes at a
time: each sweep works the sink's cursor row under ``FOR UPDATE SKIP LOCKED``, the others skip. An event is
published with QoS 1 and the cursor moves past it only after the broker's PUBACK, in the same transaction,
so a broker that goes away (or restarts) loses nothing: the sink reconnects with backoff and resumes from
the cursor. A crash between PUBACK and commit publishes that event again (at least once, never lost).

Under the same lock it publishes, retained, ``<prefix>/status`` = ``online`` (its last will says
``offline``, as does a clean stop; a replica that takes over says ``online`` again), Home Assistant
discovery for every camera and region zone, each camera's recorder state and each zone's occupancy,
whenever they change (and again after a reconnect or when it takes over); a deleted camera's or zone's
discovery is cleared with an empty retained message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import asyncpg

from heldar.aio import raise_if_cancelled, wait_set
from heldar.mqtt import topics
from heldar.store import mqtt as store
from heldar.store.webhooks import events_past
from heldar.webhooks.delivery import event_body

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    prefix: str = "heldar"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    interval_s: float = 2.0
    client_id: str | None = None
    settle_s: float = 0.5
    batch: int = 200
    qos: int = 1
    timeout_s: float = 10.0
    reconnect_max_s: float = 30.0

    @property
    def where(self) -> str:
        """host:port, for logs (never the credentials)."""
        return f"{self.host}:{self.port}"


def parse_mqtt_url(url: str, **options: Any) -> MqttConfig:
    """``mqtt://[user:password@]host[:port]`` (1883) or ``mqtts://`` (8883, TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("HELDAR_MQTT_URL must be mqtt://[user:password@]host[:port] or mqtts://...")
    tls = parts.scheme == "mqtts"
    return MqttConfig(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
        **options,
    )


def config_from_settings(settings: Any) -> MqttConfig | None:
    if not settings.mqtt_url:
        return None
    return parse_mqtt_url(
        settings.mqtt_url,
        prefix=settings.mqtt_topic_prefix.strip("/"),
        discovery=settings.mqtt_discovery,
        discovery_prefix=settings.mqtt_discovery_prefix.strip("/"),
        interval_s=settings.mqtt_interval_s,
        client_id=settings.mqtt_client_id,
    )


class MqttSink:
    def __init__(self, pool: asyncpg.Pool, config: MqttConfig) -> None:
        self.pool = pool
        self.config = config
        self.sink = config.prefix
        self._wake = asyncio.Event()
        self._retained: dict[str, bytes] = {}  # what this connection last published, retained, per topic
        self._current: set[str] = set()  # the retained topics of the sweep in progress
        self._holder = False  # whether the last sweep held the cursor lock
        self.published = 0
        self.connected = False

    def wake(self) -> None:
        self._wake.set()

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id or f"heldar-{socket.gethostname()}-{os.getpid()}",
            will=aiomqtt.Will(topics.status_topic(cfg.prefix), b"offline", qos=1, retain=True),
            tls_context=ssl.create_default_context() if cfg.tls else None,
            timeout=cfg.timeout_s,
            keepalive=30,
        )

    async def run(self) -> None:
        """Connect, sweep until the connection fails, reconnect with capped backoff; until cancelled."""
        await store.ensure_cursor(self.pool, self.sink)
        delay = 1.0
        while True:
            raise_if_cancelled()  # aiomqtt waits with wait_for: a cancel it swallowed ends the sink here
            try:
                async with self._client() as client:
                    self.connected, delay = True, 1.0
                    self._retained.clear()
                    self._holder = False
                    logger.info("mqtt: connected to %s", self.config.where)
                    try:
                        await self._loop(client)
                    except asyncio.CancelledError:  # a clean stop: say offline (another replica says online)
                        if self._holder:
                            with contextlib.suppress(Exception):
                                status = topics.status_topic(self.config.prefix)
                                await asyncio.wait_for(client.publish(status, b"offline", qos=1, retain=True), 2)
                        raise
            except asyncio.CancelledError:
                raise
            except aiomqtt.MqttError as exc:
                logger.warning("mqtt: broker %s: %s; retrying in %.0f s", self.config.where, exc, delay)
            except (OSError, asyncpg.PostgresError) as exc:
                logger.warning("mqtt: %s: %s; retrying in %.0f s", exc.__class__.__name__, exc, delay)
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(self.config.reconnect_max_s, delay * 2)

    async def _loop(self, client: aiomqtt.Client) -> None:
        while True:
            raise_if_cancelled()
            await self.sweep(client)
            if await wait_set(self._wake, self.config.interval_s):
                await asyncio.sleep(self.config.settle_s)
            self._wake.clear()

    async def sweep(self, client: aiomqtt.Client) -> int:
        """One pass under the cursor lock: the retained state, then events past the cursor. Returns the number
        of events published; 0 also when another process holds the lock."""
        sent = 0
        async with self.pool.acquire() as conn, conn.transaction():
            cursor = await store.lock_cursor(conn, self.sink)
            if cursor is None:
                self._holder = False
                return 0
            if not self._holder:  # newly the publisher: another one's last will may have said offline
                self._retained.clear()
                self._holder = True
            await self._publish_state(client, conn)
            seq, at = cursor["cursor_seq"], None
            error: BaseException | None = None
            while error is None:
                events = await events_past(conn, seq, settle_s=self.config.settle_s, limit=self.config.batch)
                for event in events:
                    topic = topics.event_topic(self.config.prefix, event["camera_id"], event["event_type"])
                    try:
                        await client.publish(topic, event_body(event), qos=self.config.qos)
                    except aiomqtt.MqttError as exc:
                        error = exc
                        break
                    seq, at, sent = event["seq"], event["created_at"], sent + 1
                if len(events) < self.config.batch:
                    break
            # What the broker acknowledged is saved even when the connection failed half-way.
            await store.save_cursor(conn, self.sink, cursor_seq=seq, cursor_at=at, published=sent,
                                    last_error=f"{error.__class__.__name__}: {error}" if error else None)  # fmt: skip
        self.published += sent
        if error is not None:
            raise error
        return sent

    async def _retain(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        self._current.add(topic)
        if self._retained.get(topic) != payload:
            await client.publish(topic, payload, qos=1, retain=True)
            self._retained[topic] = payload

    async def _publish_state(self, client: aiomqtt.Client, conn: asyncpg.Connection) -> None:
        cfg = self.config
        before = set(self._retained)
        self._current = set()
        await self._retain(client, topics.status_topic(cfg.prefix), b"online")
        cameras = await store.camera_states(conn)
        names = {c["id"]: c["name"] for c in cameras}
        for camera in cameras:
            if cfg.discovery:
                await self._retain(client, *topics.camera_discovery(cfg.prefix, cfg.discovery_prefix, camera))
            await self._retain(client, topics.camera_state_topic(cfg.prefix, camera["id"]), camera["state"].encode())
        for zone in await store.zone_occupancy(conn):
            if cfg.discovery:
                camera_name = names.get(zone["camera_id"], zone["camera_id"])
                await self._retain(client, *topics.zone_discovery(cfg.prefix, cfg.discovery_prefix, zone, camera_name))
            state = topics.zone_topic(cfg.prefix, zone["camera_id"], zone["id"])
            await self._retain(client, state, b"ON" if zone["count"] > 0 else b"OFF")
            await self._retain(client, f"{state}/count", json.dumps({"count": zone["count"]}).encode())
        # A camera or zone deleted since the last sweep: an empty retained message removes its entity.
        for topic in sorted(before - self._current):
            await client.publish(topic, b"", qos=1, retain=True)
            self._retained.pop(topic, None)
