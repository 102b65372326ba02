"""The MQTT sink against a real broker (Debian's ``mosquitto``, started here on a free port) and PostgreSQL.

Events reach a subscriber on ``<prefix>/<camera>/<event_type>``; a broker restart loses nothing (events
written while it is down are published from the cursor once it is back); two sinks on one database (two API
processes) publish each event once; Home Assistant discovery payloads are valid JSON naming the documented
state topics, and those topics carry the camera's state and the zone's occupancy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from heldar.aio import raise_if_cancelled
from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.mqtt import MqttConfig, MqttSink, parse_mqtt_url
from heldar.store import cameras as camera_store
from heldar.store import events as event_store
from heldar.store import mqtt as mqtt_store
from heldar.store.database import create_pool

pytestmark = pytest.mark.integration

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A mosquitto with persistence (a subscriber's QoS 1 session survives its restart, as in production)."""

    root: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.root / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.root}/\nlog_dest file {self.root}/mosquitto.log\n"
        )
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            time.sleep(0.1)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # mosquitto saves its persistence file on SIGTERM
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: run `make deps` (installs Debian's mosquitto)")
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _config(broker: Broker, prefix: str, **extra: Any) -> MqttConfig:
    return parse_mqtt_url(f"mqtt://127.0.0.1:{broker.port}", prefix=prefix, interval_s=0.3, settle_s=0.1,
                          reconnect_max_s=1, **extra)  # fmt: skip


@contextlib.asynccontextmanager
async def running(sink: MqttSink) -> AsyncIterator[MqttSink]:
    task = asyncio.create_task(sink.run())
    try:
        yield sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Collector:
    """A subscriber that keeps every message (topic, payload, retain) it gets."""

    def __init__(self, broker: Broker, pattern: str, *, client_id: str | None = None) -> None:
        self.broker, self.pattern, self.client_id = broker, pattern, client_id
        self.messages: list[tuple[str, bytes, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def _run(self) -> None:
        while True:
            raise_if_cancelled()  # aiomqtt may swallow the cancel of __aexit__ (heldar.aio)
            try:
                async with aiomqtt.Client("127.0.0.1", self.broker.port, identifier=self.client_id,
                                          clean_session=False if self.client_id else None) as client:  # fmt: skip
                    await client.subscribe(self.pattern, qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        self.messages.append((str(message.topic), bytes(message.payload), bool(message.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.3)  # the broker is down: come back as a real subscriber would

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 15)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.messages if "/zone/" not in t and not t.endswith(("/state",
                "/status", "/count"))]  # fmt: skip

    def last(self, topic: str) -> bytes | None:
        found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None


async def _until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def db_url(new_database) -> str:  # type: ignore[no-untyped-def]
    return str(new_database())


@pytest.fixture
async def pool(db_url: str):  # type: ignore[no-untyped-def]
    p = await create_pool(db_url, max_size=4)
    try:
        yield p
    finally:
        await p.close()


async def _camera(pool: Any, cid: str, *, record: bool = False) -> None:
    body = CameraCreate(id=cid, name=f"Camera {cid}", main_stream_url="rtsp://127.0.0.1:1/x", record_enabled=record)
    await camera_store.insert_camera(pool, Camera.from_create(body, RecordingDefaults()))


async def test_events_reach_a_subscriber_on_camera_and_type_topics(broker: Broker, pool: Any) -> None:
    await _camera(pool, "door")
    before = await event_store.insert_event(pool, "camera_offline", camera_id="door")  # before the sink: history
    async with Collector(broker, "t1/#") as sub, running(MqttSink(pool, _config(broker, "t1", discovery=False))):
        await _until(lambda: sub.last("t1/status") == b"online", 15, "the sink online")
        ids = [await event_store.insert_event(pool, "zone_enter", camera_id="door", payload={"zone": "z1"}),
               await event_store.insert_event(pool, "recording_gap", camera_id="door", severity="warning"),
               await event_store.insert_event(pool, "sampler_offline")]  # fmt: skip
        await _until(lambda: len(sub.events()) >= 3, 20, "three events")
    by_id = {e["id"]: e for e in sub.events()}
    assert set(by_id) == set(ids) and before not in by_id  # a new sink starts at "now", no history flood
    topics = {t for t, _, _ in sub.messages}
    assert {"t1/door/zone_enter", "t1/door/recording_gap", "t1/_system/sampler_offline"} <= topics
    assert by_id[ids[0]]["payload"] == {"zone": "z1"} and by_id[ids[1]]["severity"] == "warning"
    assert [e["seq"] for e in sub.events()] == sorted(e["seq"] for e in sub.events())  # in order
    assert not any(retain for t, _, retain in sub.messages if t.startswith("t1/door/zone_enter"))


async def test_a_broker_restart_loses_nothing(broker: Broker, pool: Any) -> None:
    await _camera(pool, "yard")
    async with (
        Collector(broker, "t2/#", client_id=f"heldar-test-{uuid.uuid4().hex[:6]}") as sub,
        running(MqttSink(pool, _config(broker, "t2", discovery=False))) as sink,
    ):
        await _until(lambda: sub.last("t2/status") == b"online", 15, "the sink online")
        first = await event_store.insert_event(pool, "camera_offline", camera_id="yard")
        await _until(lambda: first in {e["id"] for e in sub.events()}, 20, "the first event")
        broker.stop()
        during = [await event_store.insert_event(pool, "zone_exit", camera_id="yard", payload={"n": i})
                  for i in range(5)]  # fmt: skip
        deadline = time.monotonic() + 30  # the sink tries, nothing is acknowledged, the cursor stays
        while (await mqtt_store.get_cursor(pool, "t2") or {}).get("last_error") is None:
            assert time.monotonic() < deadline, "the sink never tried to publish while the broker was down"
            await asyncio.sleep(0.2)
        assert not sink.connected
        broker.start()
        await _until(lambda: set(during) <= {e["id"] for e in sub.events()}, 45, "every event written while down")
        after = await event_store.insert_event(pool, "camera_offline", camera_id="yard")
        await _until(lambda: after in {e["id"] for e in sub.events()}, 20, "an event after the restart")
    cursor = await mqtt_store.get_cursor(pool, "t2")
    assert cursor is not None
    assert cursor["cursor_seq"] == await pool.fetchval("SELECT max(seq) FROM events")
    assert cursor["last_error"] is None  # cleared by the first good sweep


async def test_two_sinks_on_one_database_publish_each_event_once(broker: Broker, pool: Any) -> None:
    await _camera(pool, "gate")
    async with (
        Collector(broker, "t3/#") as sub,
        running(MqttSink(pool, _config(broker, "t3", discovery=False, client_id="replica-a"))),
        running(MqttSink(pool, _config(broker, "t3", discovery=False, client_id="replica-b"))),
    ):
        await _until(lambda: sub.last("t3/status") == b"online", 15, "a sink online")
        ids = [await event_store.insert_event(pool, "zone_enter", camera_id="gate") for _ in range(20)]
        await _until(lambda: len(sub.events()) >= 20, 30, "twenty events")
        await asyncio.sleep(1.0)  # time for a duplicate to show up
    assert sorted(e["id"] for e in sub.events()) == sorted(ids)


async def test_home_assistant_discovery_is_valid_and_names_live_topics(broker: Broker, pool: Any) -> None:
    await _camera(pool, "porch", record=True)  # meant to record (no supervisor runs here: its status is set below)
    await pool.execute("UPDATE camera_status SET state = 'recording' WHERE camera_id = 'porch'")
    await pool.execute(
        "INSERT INTO zones (id, camera_id, name, kind, polygon) VALUES ('zon_drive', 'porch', 'Drive way', 'region',"
        " '[[0,0],[1,0],[1,1]]'::jsonb), ('zon_line', 'porch', 'Line', 'line', '[[0,0],[1,1]]'::jsonb)"
    )
    async with Collector(broker, "#") as sub, running(MqttSink(pool, _config(broker, "t4"))):
        sensor = "homeassistant/sensor/heldar/porch_state/config"
        zone = "homeassistant/binary_sensor/heldar/zon_drive_occupancy/config"
        await _until(lambda: sub.last(sensor) and sub.last(zone), 20, "discovery for the camera and its zone")
        camera_doc, zone_doc = json.loads(sub.last(sensor) or b""), json.loads(sub.last(zone) or b"")
        await _until(lambda: sub.last(camera_doc["state_topic"]) == b"recording", 10, "the camera's state")
        assert sub.last(zone_doc["state_topic"]) == b"OFF"
        await pool.execute("INSERT INTO zone_occupancy (zone_id, camera_id, count) VALUES ('zon_drive', 'porch', 2)")
        await pool.execute("UPDATE camera_status SET state = 'offline' WHERE camera_id = 'porch'")
        await _until(lambda: sub.last(zone_doc["state_topic"]) == b"ON", 10, "the zone occupied")
        await _until(lambda: sub.last(camera_doc["state_topic"]) == b"offline", 10, "the camera offline")
        # the state the API shows, not the recorder's last word: a cleared stream URL is an error at once
        await pool.execute("UPDATE cameras SET main_stream_url = NULL WHERE id = 'porch'")
        await _until(lambda: sub.last(camera_doc["state_topic"]) == b"error", 10, "the camera without a URL")
        await pool.execute("UPDATE cameras SET enabled = false WHERE id = 'porch'")
        await _until(lambda: sub.last(camera_doc["state_topic"]) == b"disabled", 10, "the camera switched off")
        assert json.loads(sub.last(zone_doc["json_attributes_topic"]) or b"") == {"count": 2}
        await pool.execute("DELETE FROM zones WHERE id = 'zon_drive'")  # its entity goes away in Home Assistant
        await _until(lambda: sub.last(zone) == b"", 10, "the deleted zone's discovery cleared")
    assert (
        camera_doc["state_topic"] == "t4/porch/state" and zone_doc["state_topic"] == "t4/porch/zone/zon_drive/occupancy"
    )
    for doc in (camera_doc, zone_doc):
        assert {"name", "unique_id", "state_topic", "availability_topic", "device"} <= set(doc)
        assert doc["availability_topic"] == "t4/status" and doc["device"]["identifiers"] == ["heldar_porch"]
    assert camera_doc["device_class"] == "enum" and "recording" in camera_doc["options"]
    assert zone_doc["device_class"] == "occupancy" and (zone_doc["payload_on"], zone_doc["payload_off"]) == (
        "ON",
        "OFF",
    )
    assert not any("zon_line" in t for t, _, _ in sub.messages)  # a line zone has no occupancy
    async with Collector(broker, "t4/status") as status:  # the sink stopped cleanly: unavailable, retained
        await _until(lambda: status.last("t4/status") == b"offline", 10, "offline after a clean stop")
    async with Collector(broker, "homeassistant/#") as late:  # Home Assistant starting later still learns it all
        await _until(lambda: sensor in {t for t, _, retain in late.messages if retain}, 10, "retained discovery")
        await asyncio.sleep(0.5)
        assert zone not in {t for t, _, _ in late.messages}  # cleared: nothing retained for the deleted zone


def test_mqtt_url_parsing() -> None:
    cfg = parse_mqtt_url("mqtts://ha%40home:p%3Ass@broker.lan")
    assert (cfg.host, cfg.port, cfg.username, cfg.password, cfg.tls) == ("broker.lan", 8883, "ha@home", "p:ss", True)
    assert "p:ss" not in repr(cfg)
    assert parse_mqtt_url("mqtt://b").port == 1883
    with pytest.raises(ValueError):
        parse_mqtt_url("http://b")


def test_the_api_process_runs_the_sink_when_configured(broker: Broker, db_url: str, tmp_path: Path) -> None:
    """create_app (every heldar serve / heldar api) starts the sink from HELDAR_MQTT_URL and stops it with the app."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from config import load_settings

    settings = load_settings(data_dir=tmp_path, auth_enabled=False, mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
                             mqtt_topic_prefix="t5", mqtt_interval_s=0.3)  # fmt: skip

    async def collect() -> list[dict[str, Any]]:
        async with Collector(broker, "t5/#") as sub:
            await _until(lambda: sub.last("t5/status") == b"online", 20, "the app's sink online")
            pool = await create_pool(db_url, max_size=1)
            try:
                event_id = await event_store.insert_event(pool, "camera_offline", camera_id=None)
            finally:
                await pool.close()
            await _until(lambda: event_id in {e["id"] for e in sub.events()}, 20, "the event via the app's sink")
            return sub.events()

    with TestClient(create_app(settings, db_url)) as client:
        assert client.get("/healthz").status_code == 200
        assert any(e["event_type"] == "camera_offline" for e in asyncio.run(collect()))
