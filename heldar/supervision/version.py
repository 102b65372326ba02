"""Which camera edits restart the recorder, and which apply live.

The recorder's ffmpeg is started from a handful of inputs (the URL it records, transport, segment length,
audio, record mode). Only a change of those is worth a hole in the footage; everything else (name, priority,
retention, ANR settings, pre/post-roll) is pushed to the running actor. Both are digests, so the supervisor can
compare what runs with what the table says without keeping whole rows around.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from heldar.models.cameras import Camera

# Fields whose change needs a new ffmpeg (and so a new camera actor).
RESTART_FIELDS = ("record_stream", "rtsp_transport", "segment_seconds", "record_audio", "record_mode")
# Fields a running camera actor takes live (``CameraActor.update_camera``).
LIVE_FIELDS = (
    "name",
    "priority",
    "retention_hours",
    "anr_enabled",
    "anr_replay_url_template",
    "pre_roll_seconds",
    "post_roll_seconds",
    "vendor",
    "model",
)


def _digest(values: dict[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def recorder_version(camera: Camera) -> str:
    """Digest of everything the recorder's ffmpeg is started from (the record URL with its credentials too)."""
    values: dict[str, Any] = {f: getattr(camera, f) for f in RESTART_FIELDS}
    values["record_url"] = camera.record_url()
    return _digest(values)


def live_version(camera: Camera) -> str:
    """Digest of the settings a running recorder applies without a restart."""
    values: dict[str, Any] = {f: getattr(camera, f) for f in LIVE_FIELDS}
    values["replay_url"] = camera.replay_url_template()
    return _digest(values)
