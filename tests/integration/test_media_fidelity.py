"""Field fidelity with real parts: the RTSP simulator's looped pre-encoded clip, H.265 and G.711 cameras, recorded
by the recorder's own ffmpeg command (stream copy), decoded by PyAV."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import av
import psutil
import pytest

from heldar.fakecam import FakeCamSimThread, StreamProfile
from heldar.fakecam.codecs import H264
from heldar.fakecam.h264 import AnnexBParser
from heldar.fakecam.source import LoopedFileSource
from heldar.media.binary import ffmpeg_exe

pytestmark = pytest.mark.integration

SMALL_LOOP = StreamProfile(looped=True, width=320, height=180, bitrate_kbps=400)  # encodes in well under a second


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fakecam-cache")


@pytest.fixture(scope="module")
def sim(cache: Path) -> Iterator[FakeCamSimThread]:
    with FakeCamSimThread(host="127.0.0.1", port=0, control_port=0, cache_dir=str(cache)) as runner:
        yield runner


def _copy(url: str, out: Path, seconds: float, fmt: str = "matroska") -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-rtsp_transport", "tcp",
         "-timeout", "5000000", "-i", url, "-t", str(seconds), "-c", "copy", "-f", fmt, str(out)],
        check=True, timeout=60,
    )  # fmt: skip


def _encoders(me: psutil.Process) -> int:
    return sum(1 for c in me.children() if "ffmpeg" in c.name())


def test_a_looped_camera_sends_the_cached_clip_without_encoding(
    sim: FakeCamSimThread, cache: Path, tmp_path: Path
) -> None:
    me = psutil.Process()
    live_encoders = _encoders(me)
    sim.add_camera("loop", profile=SMALL_LOOP)
    sim.add_camera("loop2", profile=SMALL_LOOP)  # the same profile: the same loop
    settings = SMALL_LOOP.settings(sim.sim.base_settings)
    clip = LoopedFileSource(cache_dir=str(cache)).clip_path(settings)
    assert clip.exists()  # encoded once into the cache, keyed by its parameters
    assert _encoders(me) == live_encoders  # serving the loop runs no encoder
    streams = [s for s in sim.status()["streams"] if s["looped"]]
    assert len(streams) == 1 and (streams[0]["width"], streams[0]["height"]) == (320, 180)

    out = tmp_path / "loop.ts"
    _copy(sim.url("loop"), out, 4.0, fmt="mpegts")  # MPEG-TS keeps Annex-B: the NAL units as they came
    parser = AnnexBParser(H264)
    cached = [
        _vcl(b"".join(b"\x00\x00\x01" + n for n in nals)) for nals in parser.feed(clip.read_bytes()) + parser.flush()
    ]
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
        packets = [bytes(p) for p in container.demux(stream) if p.size]
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 45
    # Every received picture is one of the clip's, byte for byte, in the clip's order (wrapping at its end).
    index = {body: i for i, body in enumerate(cached)}
    positions = [index.get(_vcl(p)) for p in packets]
    assert None not in positions and len(positions) >= 45
    assert {(b - a) % len(cached) for a, b in itertools.pairwise(positions)} == {1}
    kbps = sum(len(p) for p in packets) * 8 / (len(packets) / 15) / 1000
    assert 250 < kbps < 600, kbps  # the clip's bitrate, about 400 kbit/s


def _vcl(annexb: bytes) -> bytes:
    """The slice NAL units of one picture, concatenated (what a stream copy must not change)."""
    parser = AnnexBParser(H264)
    nals = [n for au in parser.feed(annexb) + parser.flush() for n in au]
    return b"".join(n for n in nals if H264.is_vcl(H264.nal_type(n)))


def test_loop_serves_at_the_frame_rate(sim: FakeCamSimThread) -> None:
    sim.add_camera("loop3", profile=SMALL_LOOP)
    enc = next(s for s in sim.status()["streams"] if s["looped"])
    time.sleep(2.0)
    later = next(s for s in sim.status()["streams"] if s["looped"])
    assert 20 <= later["frames"] - enc["frames"] <= 40  # 15 fps
