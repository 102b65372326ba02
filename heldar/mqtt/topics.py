"""MQTT topics and Home Assistant discovery payloads (pure functions; the README documents these topics).

* ``<prefix>/<camera>/<event_type>``: every event (``<prefix>/_system/<event_type>`` without a camera), the
  webhook body as JSON, QoS 1, not retained.
* ``<prefix>/status``: ``online`` / ``offline`` (retained; ``offline`` is the publisher's last will).
* ``<prefix>/<camera>/state``: the camera's recorder state (retained): unknown, disabled, connecting,
  recording, offline, error.
* ``<prefix>/<camera>/zone/<zone>/occupancy``: ``ON`` / ``OFF`` (retained), ``.../count``: the count.
* ``<discovery>/sensor/heldar/<camera>_state/config`` and
  ``<discovery>/binary_sensor/heldar/<zone>_occupancy/config``: Home Assistant discovery (retained).
"""

from __future__ import annotations

import json
import re
from typing import Any

CAMERA_STATES = ("unknown", "disabled", "connecting", "recording", "offline", "error")
NO_CAMERA = "_system"
_UNSAFE_LEVEL = re.compile(r"[+#/\x00]")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def level(text: str) -> str:
    """One topic level: no wildcard, separator or NUL characters."""
    return _UNSAFE_LEVEL.sub("_", text) or "_"


def object_id(text: str) -> str:
    """Home Assistant's object and node ids allow only ``[A-Za-z0-9_-]``."""
    return _UNSAFE_ID.sub("_", text)


def event_topic(prefix: str, camera_id: str | None, event_type: str) -> str:
    return f"{prefix}/{level(camera_id) if camera_id else NO_CAMERA}/{level(event_type)}"


def status_topic(prefix: str) -> str:
    return f"{prefix}/status"


def camera_state_topic(prefix: str, camera_id: str) -> str:
    return f"{prefix}/{level(camera_id)}/state"


def zone_topic(prefix: str, camera_id: str, zone_id: str) -> str:
    return f"{prefix}/{level(camera_id)}/zone/{level(zone_id)}/occupancy"


def _device(camera_id: str, camera_name: str) -> dict[str, Any]:
    return {"identifiers": [f"heldar_{object_id(camera_id)}"], "name": camera_name, "manufacturer": "heldar",
            "model": "IP camera (heldar)"}  # fmt: skip


def camera_discovery(prefix: str, discovery_prefix: str, camera: dict[str, Any]) -> tuple[str, bytes]:
    """(topic, payload) announcing a camera's recorder state as an enum sensor."""
    cid = camera["id"]
    topic = f"{discovery_prefix}/sensor/heldar/{object_id(cid)}_state/config"
    doc = {
        "name": "Recording state",
        "unique_id": f"heldar_{object_id(cid)}_state",
        "state_topic": camera_state_topic(prefix, cid),
        "availability_topic": status_topic(prefix),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device_class": "enum",
        "options": list(CAMERA_STATES),
        "icon": "mdi:cctv",
        "device": _device(cid, camera.get("name") or cid),
    }
    return topic, json.dumps(doc, sort_keys=True).encode()


def zone_discovery(prefix: str, discovery_prefix: str, zone: dict[str, Any], camera_name: str) -> tuple[str, bytes]:
    """(topic, payload) announcing a region zone's occupancy as a binary sensor of its camera's device."""
    zid, cid = zone["id"], zone["camera_id"]
    state = zone_topic(prefix, cid, zid)
    topic = f"{discovery_prefix}/binary_sensor/heldar/{object_id(zid)}_occupancy/config"
    doc = {
        "name": f"{zone.get('name') or zid} occupancy",
        "unique_id": f"heldar_{object_id(zid)}_occupancy",
        "state_topic": state,
        "payload_on": "ON",
        "payload_off": "OFF",
        "json_attributes_topic": f"{state}/count",
        "availability_topic": status_topic(prefix),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device_class": "occupancy",
        "device": _device(cid, camera_name),
    }
    return topic, json.dumps(doc, sort_keys=True).encode()
