"""probe_segment on files made by the real ffmpeg, including truncated and broken ones."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from heldar.media.binary import ffmpeg_exe
from heldar.media.fmp4_probe import probe_fmp4
from heldar.media.mp4_boxes import NotFragmented
from heldar.media.probe import SegmentProbe, _probe_by_demux, probe_segment
from heldar.media.recorder_command import FRAGMENTED_MP4_FLAGS


def make(out: Path, *args: str, seconds: float = 3, rate: int = 10, audio: bool = False) -> Path:
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac"] if audio else ["-an"]
    cmd += [*args, str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("probe")
    frag = ["-f", "mp4", "-movflags", FRAGMENTED_MP4_FLAGS]
    files = {
        "frag": make(d / "frag.mp4", *frag),
        "plain": make(d / "plain.mp4", "-movflags", "+faststart"),
        "audio": make(d / "audio.mp4", *frag, audio=True),
        "tiny": make(d / "tiny.mp4", "-frames:v", "1", *frag, rate=30),
    }
    data = files["frag"].read_bytes()
    files["half"] = d / "half.mp4"
    files["half"].write_bytes(data[: len(data) // 2])
    files["head"] = d / "head.mp4"
    files["head"].write_bytes(data[:600])  # ftyp + empty moov, no fragment yet
    files["empty"] = d / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["junk"] = d / "junk.mp4"
    files["junk"].write_bytes(bytes(range(256)) * 64)
    plain = files["plain"].read_bytes()
    files["plain_half"] = d / "plain_half.mp4"
    files["plain_half"].write_bytes(plain[: len(plain) // 2])
    return files


def test_fragmented_segment(media: dict[str, Path]) -> None:
    p = probe_segment(media["frag"])
    assert isinstance(p, SegmentProbe)
    assert p.duration_s == pytest.approx(3.0, abs=0.05)
    assert (p.codec, p.width, p.height) == ("h264", 320, 240)
    assert p.fps == pytest.approx(10.0)
    assert p.size_bytes == media["frag"].stat().st_size
    assert not p.has_audio
    assert p.video_packets == 30
    assert p.bitrate_kbps == pytest.approx(p.size_bytes * 8 / p.duration_s / 1000)


def test_plain_faststart_mp4(media: dict[str, Path]) -> None:
    p = probe_segment(media["plain"])
    assert p is not None and p.duration_s == pytest.approx(3.0, abs=0.05)


def test_audio_detected(media: dict[str, Path]) -> None:
    p = probe_segment(media["audio"])
    assert p is not None and p.has_audio
    assert p.duration_s == pytest.approx(3.0, abs=0.1)  # mov stretches the last video sample to the audio end


def test_truncated_fragmented_file_reports_only_complete_fragments(media: dict[str, Path]) -> None:
    # The container duration of a truncated fragmented mp4 can still claim the full length;
    # the packet-based duration tells what is really there.
    p = probe_segment(media["half"])
    assert p is not None
    assert 0.5 <= p.duration_s < 2.5
    assert p.video_packets < 30


def test_truncated_plain_mp4_does_not_crash(media: dict[str, Path]) -> None:
    p = probe_segment(media["plain_half"])  # moov at the front, mdat cut: some packets, or None
    assert p is None or 0 < p.duration_s <= 3.05


@pytest.mark.parametrize("name", ["head", "empty", "junk", "tiny"])
def test_unusable_files_give_none(media: dict[str, Path], name: str) -> None:
    assert probe_segment(media[name]) is None


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert probe_segment(tmp_path / "nope.mp4") is None
    assert probe_segment(tmp_path) is None


def test_deadline_gives_none(media: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "c.mp4"
    shutil.copy(media["frag"], copy)
    assert probe_segment(copy, timeout_s=-1) is None
    assert probe_segment(copy, timeout_s=10) is not None


@pytest.fixture(scope="module")
def camera_like(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fragmented files shaped like real camera recordings: 15 fps, 1 s GOP, H.264 with B-frames, H.265 hvc1."""
    d = tmp_path_factory.mktemp("camera_like")
    frag = ["-f", "mp4", "-movflags", FRAGMENTED_MP4_FLAGS]
    files = {
        "h264_bframes": make(d / "b.mp4", "-bf", "2", "-g", "15", *frag, seconds=4, rate=15, audio=True),
    }
    hevc = d / "hevc.mp4"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           "testsrc2=size=320x240:rate=15", "-t", "4", "-c:v", "libx265", "-preset", "ultrafast",
           "-x265-params", "keyint=15:min-keyint=15:log-level=error", "-tag:v", "hvc1", *frag, str(hevc)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=60)
    files["hevc"] = hevc
    data = files["h264_bframes"].read_bytes()
    files["growing"] = d / "growing.mp4"
    files["growing"].write_bytes(data[: int(len(data) * 0.7)])
    return files


@pytest.mark.parametrize("name", ["h264_bframes", "hevc", "growing"])
def test_box_probe_agrees_with_the_demuxer(camera_like: dict[str, Path], name: str) -> None:
    path = camera_like[name]
    assert probe_fmp4(path) is not None  # read from its boxes, not demuxed
    boxes = probe_segment(path)
    demuxed = _probe_by_demux(path, path.stat().st_size, time.monotonic() + 10, 10)
    assert boxes is not None and demuxed is not None
    assert (boxes.codec, boxes.width, boxes.height, boxes.has_audio) == (
        demuxed.codec, demuxed.width, demuxed.height, demuxed.has_audio)  # fmt: skip
    if name == "growing":  # the demuxer also counts packets of the fragment still being written
        assert boxes.video_packets <= demuxed.video_packets and boxes.video_packets % 15 == 0
        assert boxes.duration_s == pytest.approx(boxes.video_packets / 15, abs=1 / 15)
        return
    assert boxes.video_packets == demuxed.video_packets == 60
    assert boxes.duration_s == pytest.approx(demuxed.duration_s, abs=1 / 15)
    assert boxes.fps == pytest.approx(15, rel=0.02) and demuxed.fps == pytest.approx(15, rel=0.02)


def test_a_plain_mp4_is_demuxed_not_read_from_boxes(media: dict[str, Path]) -> None:
    with pytest.raises(NotFragmented):
        probe_fmp4(media["plain"])
    assert probe_segment(media["plain"]) is not None
