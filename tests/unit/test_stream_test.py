"""Stream test: parsing ffmpeg's input description, and bounded runs against local peers (no camera)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from heldar.media.stream_test import check_stream, parse_video_stream, probe_command

FFMPEG_STDERR = """Input #0, rtsp, from 'rtsp://admin:***@127.0.0.1:37683/secure':
  Metadata:
    title           : secure
  Duration: N/A, start: 0.066667, bitrate: N/A
  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(progressive), 640x360 [SAR 1:1 DAR 16:9], 15 fps, 90k tbn
Stream mapping:
  Stream #0:0 -> #0:0 (copy)
Output #0, null, to 'pipe:':
  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(progressive), 640x360 [SAR 1:1 DAR 16:9], q=2-31
"""


def test_parse_input_video_stream() -> None:
    info = parse_video_stream(FFMPEG_STDERR)
    assert info is not None and (info.codec, info.width, info.height) == ("h264", 640, 360)


def test_parse_hevc_with_audio_first_and_language_tag() -> None:
    text = (
        "Input #0, rtsp, from 'rtsp://cam/x':\n"
        "  Stream #0:0: Audio: pcm_alaw, 8000 Hz, mono, s16, 64 kb/s\n"
        "  Stream #0:1(und): Video: hevc (Main), yuvj420p(pc, bt709), 2560x1440, 20 fps, 90k tbn\n"
    )
    info = parse_video_stream(text)
    assert info is not None and (info.codec, info.width, info.height) == ("hevc", 2560, 1440)


def test_parse_nothing_or_output_only() -> None:
    assert parse_video_stream("") is None
    assert parse_video_stream("Output #0, null, to 'pipe:':\n  Stream #0:0: Video: h264, 10x10\n") is None


def test_command_uses_transport_and_socket_timeout() -> None:
    cmd = probe_command("rtsp://u:p@cam/x", "udp", 3_000_000)
    assert cmd[cmd.index("-rtsp_transport") + 1] == "udp"
    assert cmd[cmd.index("-timeout") + 1] == "3000000"
    assert "-rtsp_transport" not in probe_command("http://cam/x.mjpg")


def test_refused_port_is_unreachable_without_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"rtsp://admin:Hunter2pw@127.0.0.1:{port}/live"
    result = asyncio.run(check_stream(url, secrets=("Hunter2pw",)))
    assert not result.reachable
    assert result.error_code == "refused"
    assert result.url == f"rtsp://admin:***@127.0.0.1:{port}/live"
    assert "Hunter2pw" not in str(result.to_dict())


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never answers (a hung camera)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def test_silent_camera_is_cut_off_at_the_deadline(silent_server: int) -> None:
    started = time.monotonic()
    result = asyncio.run(
        check_stream(
            f"rtsp://u:pw-secret@127.0.0.1:{silent_server}/x",
            secrets=("pw-secret",),
            deadline_s=1.5,
            socket_timeout_us=30_000_000,
        )
    )
    elapsed = time.monotonic() - started
    assert not result.reachable and result.error_code == "timeout"
    assert elapsed < 4.0
    assert "pw-secret" not in str(result.to_dict())
