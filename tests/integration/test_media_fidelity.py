"""Field fidelity with real parts: the RTSP simulator's looped pre-encoded clip, H.265 and G.711 cameras, recorded
by the recorder's own ffmpeg command (stream copy), decoded by PyAV."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import av
import psutil
import pytest

from heldar.fakecam import FakeCamSimThread, StreamProfile
from heldar.fakecam.codecs import H264
from heldar.fakecam.h264 import AnnexBParser
from heldar.fakecam.source import LoopedFileSource
from heldar.media import probe as media_probe
from heldar.media.binary import ffmpeg_exe
from heldar.media.ffmpeg_errors import classify_exit
from heldar.media.probe import StreamCodecMemo, StreamCodecs, probe_segment, probe_stream
from heldar.media.recorder_command import RecorderSpec, build_recorder_argv, recorder_env
from heldar.media.segment_names import ensure_day_dirs, list_segment_files

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


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_loop_serves_at_the_frame_rate_and_the_control_api_takes_profiles(sim: FakeCamSimThread) -> None:
    control = f"http://127.0.0.1:{sim.control_port}/cameras"
    status, body = _post(control, {"name": "loop3", "looped": True, "width": 320, "height": 180, "bitrate_kbps": 400})
    assert status == 201 and body["stream"] == {"codec": "h264", "width": 320, "height": 180, "fps": 15,
                                                "gop_seconds": 1.0, "bitrate_kbps": 400, "audio": None,
                                                "looped": True}  # fmt: skip
    assert _post(control, {"name": "bad", "codec": "vp9"})[0] == 400
    assert _post(control, {"name": "bad", "audio": "opus"})[0] == 400
    small = lambda: next(s for s in sim.status()["streams"] if s["looped"] and s["codec"] == "h264" and not s["audio"])  # noqa: E731
    enc = small()
    time.sleep(2.0)
    later = small()
    assert 20 <= later["frames"] - enc["frames"] <= 40  # 15 fps


# --- H.265 and G.711 cameras through the recorder's command -------------------------------------------------------


def _record(
    url: str, camera_dir: Path, seconds: float, closed: int | None = None, **spec_args: object
) -> tuple[bool, str]:
    """Run the recorder's own ffmpeg command (2 s segments) for ``seconds``, or with ``closed`` until that many
    segments are closed (at most 30 s: a starved machine starts ffmpeg slowly); (exited by itself, stderr)."""
    camera_dir.mkdir(parents=True, exist_ok=True)
    ensure_day_dirs(camera_dir, datetime.now(UTC))
    spec = RecorderSpec(input_url=url, camera_dir=camera_dir, run_id="f1", segment_seconds=2, **spec_args)  # type: ignore[arg-type]
    proc = subprocess.Popen(build_recorder_argv(spec, ffmpeg_exe()), env=recorder_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    exited = True
    deadline = time.monotonic() + (30.0 if closed is not None else seconds)
    while proc.poll() is None and time.monotonic() < deadline:
        if closed is not None and len(list_segment_files(camera_dir)) > closed:
            break
        time.sleep(0.25)
    if proc.poll() is None:
        exited = False
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=15)
    return exited, stderr


def _sample_entry(path: Path) -> bytes:
    """The video sample entry's four-character code in the MP4's moov (``avc1``, ``hev1``, ``hvc1``)."""
    data = path.read_bytes()
    moov = data.find(b"moov")
    found = [code for code in (b"avc1", b"avc3", b"hev1", b"hvc1") if data.find(code, moov) >= 0]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def field_cams(sim: FakeCamSimThread) -> dict[str, str]:
    """Looped small clips: served at a steady 15 fps whatever the machine's load (encoded once)."""
    hevc = replace(SMALL_LOOP, codec="h265")
    sim.add_camera("hevc", profile=hevc)
    sim.add_camera("alaw", profile=replace(SMALL_LOOP, audio="pcm_alaw"))
    sim.add_camera("hevc_mulaw", profile=replace(hevc, audio="pcm_mulaw"))
    return {name: sim.url(name) for name in ("hevc", "alaw", "hevc_mulaw")}


def test_probe_names_the_codecs_and_the_memo_probes_once(
    field_cams: dict[str, str], sim: FakeCamSimThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert probe_stream(field_cams["hevc_mulaw"]) == StreamCodecs(video="hevc", audio="pcm_mulaw")
    sim.add_camera("hevc_live", profile=StreamProfile(codec="h265", audio="pcm_alaw"))  # a live x265 encoder
    assert probe_stream(sim.url("hevc_live")) == StreamCodecs(video="hevc", audio="pcm_alaw")
    sim.remove_camera("hevc_live")
    assert probe_stream(field_cams["alaw"]) == StreamCodecs(video="h264", audio="pcm_alaw")
    assert probe_stream(sim.url("loop")) == StreamCodecs(video="h264", audio=None)
    assert probe_stream(f"rtsp://127.0.0.1:{sim.port}/nosuchcamera", timeout_s=2) is None
    assert probe_stream("http://127.0.0.1/x") is None  # RTSP only

    calls: list[str] = []
    real = media_probe.probe_stream

    def counted(url: str, *args: object) -> StreamCodecs | None:
        calls.append(url)
        return real(url, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(media_probe, "probe_stream", counted)
    memo = StreamCodecMemo()
    first = asyncio.run(memo.get(field_cams["hevc"]))
    assert first == StreamCodecs(video="hevc") and asyncio.run(memo.get(field_cams["hevc"])) is first
    assert len(calls) == 1  # later runs of the same recorder reuse it
    memo.forget()  # after a run that failed on the codec
    assert asyncio.run(memo.get(field_cams["hevc"])) == first and len(calls) == 2
    assert asyncio.run(memo.get(f"rtsp://127.0.0.1:{sim.port}/nosuchcamera", timeout_s=2)) == StreamCodecs()


def test_without_the_codec_known_h265_is_hev1(field_cams: dict[str, str], tmp_path: Path) -> None:
    _record(field_cams["hevc"], tmp_path / "hev1", 0, closed=1)
    files = sorted(list_segment_files(tmp_path / "hev1"), key=lambda f: f.name)
    assert files and _sample_entry(files[0].path) == b"hev1"  # ffmpeg's default: the fault the tag fixes


def test_g711_audio_is_transcoded_to_aac_and_copying_it_fails(field_cams: dict[str, str], tmp_path: Path) -> None:
    exited, stderr = _record(field_cams["alaw"], tmp_path / "copy", 20.0, record_audio=True)
    assert exited, "copying G.711 into MP4 fails at mux time"
    assert all(f.size_bytes == 0 for f in list_segment_files(tmp_path / "copy"))
    assert classify_exit(stderr, 1, killed_for_stall=False, produced_output=False).code == "codec", stderr

    codecs = probe_stream(field_cams["alaw"])
    assert codecs is not None and codecs.audio == "pcm_alaw"
    _, stderr = _record(field_cams["alaw"], tmp_path / "aac", 0, closed=2, record_audio=True, audio_codec=codecs.audio,
                         video_codec=codecs.video)  # fmt: skip
    files = sorted(list_segment_files(tmp_path / "aac"), key=lambda f: f.name)
    assert len(files) >= 2, stderr
    _assert_plays_with_aac(files[0].path)


def test_h265_with_g711_records_mp4_tagged_hvc1_with_aac_and_live_view(
    field_cams: dict[str, str], tmp_path: Path
) -> None:
    codecs = probe_stream(field_cams["hevc_mulaw"])
    assert codecs == StreamCodecs(video="hevc", audio="pcm_mulaw")
    live = tmp_path / "live"
    live.mkdir()
    _, stderr = _record(field_cams["hevc_mulaw"], tmp_path / "both", 0, closed=2, record_audio=True, live_dir=live,
                         video_codec=codecs.video, audio_codec=codecs.audio)  # fmt: skip
    files = sorted(list_segment_files(tmp_path / "both"), key=lambda f: f.name)
    assert len(files) >= 2, stderr
    for f in files[:-1]:  # the closed ones
        assert _sample_entry(f.path) == b"hvc1"  # what Safari and QuickTime play
        probe = probe_segment(f.path)
        # 2 s segments; the first also holds the GOP so far that the camera sends at PLAY (up to 1 s more).
        assert probe is not None and probe.codec == "hevc" and probe.has_audio and 1.5 < probe.duration_s < 3.1
        with av.open(str(f.path)) as container:
            assert container.streams.video[0].codec_context.codec_tag == "hvc1"
        _assert_plays_with_aac(f.path)
    parts = sorted(live.glob("p*.ts"))
    assert parts and (live / "index.m3u8").exists(), stderr  # the live output takes the same packets
    with av.open(str(parts[-1])) as container:
        assert {s.codec_context.name for s in container.streams} == {"hevc", "aac"}


def _assert_plays_with_aac(path: Path) -> None:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        counts = {"pictures": 0, "samples": 0}
        for frame in container.decode(video, audio):
            if isinstance(frame, av.VideoFrame):
                counts["pictures"] += 1
            else:
                counts["samples"] += frame.samples
    # A 2 s segment: ~30 pictures and ~16000 samples (8 kHz), every one decoded.
    assert counts["pictures"] >= 20 and counts["samples"] >= 10_000, counts


def test_a_looped_clip_that_cannot_be_made_fails_the_camera_at_once(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache folder should be")
    with FakeCamSimThread(host="127.0.0.1", port=0, cache_dir=str(blocked / "cache")) as runner:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="did not start"):
            runner.add_camera("broken", profile=SMALL_LOOP)
        assert time.monotonic() - started < 10  # not the 5 minutes an encode may take
        runner.add_camera("fine")  # the default stream still serves
