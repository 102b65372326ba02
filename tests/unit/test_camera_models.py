from __future__ import annotations

import pytest

from heldar.camera_urls import check_url, mask_text, mask_url, with_credentials
from heldar.ids import slugify
from heldar.models.cameras import Camera, CameraCreate, CameraPatch, RecordingDefaults


def test_mask_url_variants() -> None:
    assert mask_url("rtsp://admin:pw@cam:554/x") == "rtsp://admin:***@cam:554/x"
    assert mask_url("rtsp://admin:p@ss@cam/x?u=a@b") == "rtsp://admin:***@cam/x?u=a@b"
    assert mask_url("rtsp://cam/x") == "rtsp://cam/x"
    assert mask_url(None) is None


def test_mask_text_hides_literal_and_encoded_secret() -> None:
    text = "Error rtsp://u:p%40ss@h/x; password p@ss rejected"
    out = mask_text(text, ("p@ss",))
    assert "p@ss" not in out and "p%40ss" not in out


def test_credentials_are_percent_encoded_once() -> None:
    assert with_credentials("rtsp://h/a", "ad min", "p@ss:/") == "rtsp://ad%20min:p%40ss%3A%2F@h/a"
    assert with_credentials("rtsp://x:y@h/a", "u", "p") == "rtsp://x:y@h/a"
    assert with_credentials("rtsp://h/a", None, "p") == "rtsp://h/a"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("rtsp://h/x", True),
        ("rtsps://h:322/x", True),
        ("http://h/x", False),
        ("rtsp:///x", False),
        ("rtsp://h:99999/x", False),
        ("rtsp://h/\nx", False),
    ],
)
def test_check_url(url: str, ok: bool) -> None:
    assert (check_url(url, ("rtsp", "rtsps")) is None) is ok


def test_slugify() -> None:
    assert slugify("Front Door #2") == "front-door-2"
    assert slugify("Café Entrée") == "cafe-entree"
    assert slugify("!!!") == ""


def test_vendor_templates_and_view_never_has_password() -> None:
    cam = Camera.from_create(
        CameraCreate(
            name="Dock",
            vendor="dahua",
            address="10.0.0.9",
            username="op",
            password="pw123456",
            record_stream="sub",
        ),
        RecordingDefaults(segment_seconds=30),
    )
    assert cam.record_url() == "rtsp://op:pw123456@10.0.0.9:554/cam/realmonitor?channel=1&subtype=1"
    view = cam.view().model_dump_json()
    assert "pw123456" not in view and '"has_password":true' in view
    assert cam.segment_seconds == 30


def test_replay_template_defaults_to_hikvision_tracks() -> None:
    cam = Camera(id="c", name="c", vendor="hikvision", address="h", rtsp_port=8554, record_stream="sub")
    assert cam.replay_url_template() == "rtsp://h:8554/Streaming/tracks/102?starttime={start}&endtime={end}"


def test_a_camera_may_lack_a_stream_url() -> None:
    """A name is enough (as upstream): such a camera has no record URL and gets no recorder."""
    named = Camera.from_create(CameraCreate(name="Back Porch"), RecordingDefaults())
    assert named.id == "back-porch" and named.record_url() is None and not named.has_stream_url()
    cam = Camera(id="c", name="c", main_stream_url="rtsp://h/x")
    assert cam.has_stream_url() and not cam.patched(CameraPatch(main_stream_url=None)).has_stream_url()
    assert cam.patched(CameraPatch(priority=3)).priority == 3
    assert not cam.patched(CameraPatch(record_stream="sub")).has_stream_url()  # no sub URL
    assert Camera(id="h", name="h", vendor="hikvision", address="10.0.0.5").has_stream_url()
    assert not Camera(id="g", name="g", vendor="generic", address="10.0.0.5").has_stream_url()
