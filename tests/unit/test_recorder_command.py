from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heldar.media.binary import ffmpeg_exe
from heldar.media.probe import probe_segment
from heldar.media.recorder_command import (
    BackfillSpec,
    RecorderSpec,
    build_backfill_argv,
    build_recorder_argv,
    recorder_env,
)
from heldar.media.segment_names import (
    backfill_name,
    ensure_day_dirs,
    list_segment_files,
    new_backfill_token,
    new_run_id,
    parse_segment_name,
)

URL = "rtsp://admin:p%40ss word@10.0.0.5:554/Streaming/Channels/101?transportmode=unicast&x=1"

# camera input may not lead ffmpeg elsewhere (security F8)
RTSP_INPUT = ["-protocol_whitelist", "rtsp,rtsps,rtp,srtp,udp,tcp,tls", "-f", "rtsp"]


def test_recorder_argv_exact(tmp_path: Path) -> None:
    spec = RecorderSpec(input_url=URL, camera_dir=tmp_path / "cam1", run_id="abc123", segment_seconds=10)
    argv = build_recorder_argv(spec, "/bin/ffmpeg")
    assert argv == [
        "/bin/ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "warning",
        "-rtsp_transport",
        "tcp",
        *RTSP_INPUT,
        "-timeout",
        "5000000",
        "-i",
        URL,
        "-map",
        "0:v",
        "-c",
        "copy",
        "-an",
        "-f",
        "segment",
        "-segment_time",
        "10",
        "-segment_format",
        "mp4",
        "-segment_format_options",
        "movflags=+frag_keyframe+empty_moov+default_base_moof:flush_packets=1",
        "-reset_timestamps",
        "1",
        "-strftime",
        "1",
        str(tmp_path / "cam1" / "%Y-%m-%d" / "%Y%m%dT%H%M%SZ_abc123.mp4"),
    ]


def test_recorder_argv_options(tmp_path: Path) -> None:
    spec = RecorderSpec(
        input_url=URL,
        camera_dir=tmp_path,
        run_id="r1",
        segment_seconds=1,
        rtsp_transport="udp",
        record_audio=True,
        timeout_s=2.5,
        loglevel="error",
    )
    argv = build_recorder_argv(spec, "ffmpeg")
    assert argv[argv.index("-rtsp_transport") + 1] == "udp"
    assert argv[argv.index("-timeout") + 1] == "2500000"
    assert argv[argv.index("-loglevel") + 1] == "error"
    assert argv[argv.index("-segment_time") + 1] == "2"  # clamped
    assert "-an" not in argv
    i = argv.index("0:a?")
    assert argv[i - 1 : i + 3] == ["-map", "0:a?", "-c:a", "copy"]
    assert argv.count(URL) == 1
    big = RecorderSpec(input_url=URL, camera_dir=tmp_path, run_id="r1", segment_seconds=99999)
    big_argv = build_recorder_argv(big, "ffmpeg")
    assert big_argv[big_argv.index("-segment_time") + 1] == "3600"
    # non-RTSP inputs get no -rtsp_transport, but still a socket timeout
    http = build_recorder_argv(RecorderSpec(input_url="http://cam/video", camera_dir=tmp_path, run_id="r1"), "ff")
    assert "-rtsp_transport" not in http and "-timeout" in http


def _after_map(argv: list[str]) -> list[str]:
    return argv[argv.index("-map") : argv.index("-f", argv.index("-map"))]


def test_known_codecs_tag_h265_hvc1_and_transcode_g711_to_aac(tmp_path: Path) -> None:
    spec = lambda **kw: RecorderSpec(input_url=URL, camera_dir=tmp_path, run_id="r1", **kw)  # noqa: E731
    assert _after_map(build_recorder_argv(spec(video_codec="hevc"), "ff")) == [
        "-map", "0:v", "-c", "copy", "-tag:v", "hvc1", "-an"]  # fmt: skip
    assert "-tag:v" not in build_recorder_argv(spec(video_codec="h264"), "ff")
    assert "-tag:v" not in build_recorder_argv(spec(), "ff")  # not known: as before
    for g711 in ("pcm_alaw", "pcm_mulaw"):
        argv = build_recorder_argv(spec(record_audio=True, video_codec="h264", audio_codec=g711), "ff")
        assert _after_map(argv) == ["-map", "0:v", "-c", "copy", "-map", "0:a?", "-c:a", "aac", "-b:a", "64k"]
    assert _after_map(build_recorder_argv(spec(record_audio=True, audio_codec="aac"), "ff"))[-2:] == ["-c:a", "copy"]
    assert "aac" not in build_recorder_argv(spec(record_audio=False, audio_codec="pcm_alaw"), "ff")
    live = build_recorder_argv(spec(record_audio=True, video_codec="hevc", audio_codec="pcm_mulaw",
                                    live_dir=tmp_path / "live"), "ff")  # fmt: skip
    assert ["-tag:v", "hvc1"] == live[live.index("-tag:v") : live.index("-tag:v") + 2] and "aac" in live
    backfill = build_backfill_argv(
        BackfillSpec(input_url=URL, output_path=tmp_path / "x.mp4", duration_s=5, record_audio=True,
                     video_codec="hevc", audio_codec="pcm_alaw"), "ff",
    )  # fmt: skip
    assert "hvc1" in backfill and backfill[backfill.index("-c:a") + 1] == "aac"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_url": ""},
        {"input_url": " rtsp://x/y"},
        {"input_url": "rtsp://x/y\nfoo"},
        {"input_url": "-rtsp://x"},
        {"rtsp_transport": "http"},
        {"timeout_s": 0},
        {"loglevel": "loud"},
        {"run_id": "BAD%id"},
    ],
)
def test_recorder_spec_validation(tmp_path: Path, kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"input_url": "rtsp://cam/x", "camera_dir": tmp_path, "run_id": "abc"}
    with pytest.raises(ValueError):
        spec = RecorderSpec(**{**base, **kwargs})  # type: ignore[arg-type]
        build_recorder_argv(spec, "ffmpeg")


def test_backfill_argv(tmp_path: Path) -> None:
    out = tmp_path / "20260101T000000Z_anr0a0b0c.mp4"
    spec = BackfillSpec(input_url=URL, output_path=out, duration_s=42.5, record_audio=True)
    argv = build_backfill_argv(spec, "ffmpeg")
    assert spec.part_path == tmp_path / "20260101T000000Z_anr0a0b0c.mp4.part"
    assert argv[-1] == str(spec.part_path)
    assert argv[argv.index("-i") + 1] == URL
    assert argv.index("-t") > argv.index("-i")
    assert argv[argv.index("-t") + 1] == "42.5"
    assert argv[argv.index("-movflags") + 1] == "+faststart"
    assert argv[len(argv) - 1 - argv[::-1].index("-f") + 1] == "mp4"  # the output format (-f rtsp is the input's)
    assert "-y" in argv and "-an" not in argv and "0:a?" in argv
    assert argv[argv.index("-timeout") + 1] == "5000000"
    short = build_backfill_argv(BackfillSpec(input_url="https://nvr/replay", output_path=out, duration_s=0.2), "ff")
    assert short[short.index("-t") + 1] == "1"  # at least one second
    assert "-rtsp_transport" not in short and "-an" in short
    assert short[short.index("-max_redirects") + 1] == "0" and "hls" not in short[short.index("-format_whitelist") + 1]
    for metadata in ("rtsp://169.254.169.254/x", "rtsp://2852039166/x", "http://[::ffff:169.254.169.254]/x"):
        with pytest.raises(ValueError, match="metadata"):
            build_backfill_argv(BackfillSpec(input_url=metadata, output_path=out, duration_s=1), "ff")
    with pytest.raises(ValueError):
        BackfillSpec(input_url=URL, output_path=out, duration_s=0)


def test_recorder_env_forces_utc() -> None:
    env = recorder_env({"TZ": "Asia/Tokyo", "PATH": "/usr/bin"})
    assert env == {"TZ": "UTC", "PATH": "/usr/bin"}
    assert recorder_env()["TZ"] == "UTC"
    assert "PATH" in recorder_env() or "PATH" not in os.environ


# ------------------------------------------------------------------ real ffmpeg runs


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s of H.264 (10 fps, keyframe every 1 s) + AAC: stands in for the camera's stream."""
    out = tmp_path_factory.mktemp("src") / "camera.mkv"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=16000",
            "-t",
            "5",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "10",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out


def swap_input(argv: list[str], url: str, replacement: list[str]) -> list[str]:
    """Replace `-rtsp_transport T -timeout N -i URL` by a local input (file protocol has no -timeout)."""
    start = argv.index("-rtsp_transport")
    end = argv.index(url)
    assert argv[start:end] == ["-rtsp_transport", "tcp", *RTSP_INPUT, "-timeout", "5000000", "-i"]
    return argv[:start] + replacement + argv[end + 1 :]


def test_real_recorder_runs_do_not_collide(tmp_path: Path, source: Path) -> None:
    camera_dir = tmp_path / "cam %Y 1"  # '%' in the directory must survive strftime
    ensure_day_dirs(camera_dir, datetime.now(UTC))  # the recorder creates the day folders ffmpeg writes into
    runs = [new_run_id(), new_run_id()]
    procs = []
    time.sleep(1.2 - time.time() % 1.0)  # start ~0.2 s into a second, so both runs share start seconds
    before = datetime.now(UTC)
    for run_id in runs:
        spec = RecorderSpec(input_url=URL, camera_dir=camera_dir, run_id=run_id, segment_seconds=2)
        argv = swap_input(build_recorder_argv(spec, ffmpeg_exe()), URL, ["-re", "-i", str(source)])
        procs.append(
            subprocess.Popen(
                argv,
                env=recorder_env({**os.environ, "TZ": "Asia/Tokyo"}),  # must be overridden to UTC
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    after = datetime.now(UTC)

    names = sorted(n for d in os.listdir(camera_dir) for n in os.listdir(camera_dir / d))
    files = list_segment_files(camera_dir)
    assert [f.name for f in files] == sorted(names, key=lambda n: (n[:16], n))
    assert len(files) == len(names)
    for run_id in runs:
        mine = [f for f in files if f.run_id == run_id]
        assert 2 <= len(mine) <= 4, names
        for f in mine:
            assert before - timedelta(seconds=2) <= f.start <= after + timedelta(seconds=1)
        probes = [probe_segment(f.path) for f in mine]
        assert all(p is not None for p in probes)
        total = sum(p.duration_s for p in probes if p is not None)
        assert total == pytest.approx(5.0, abs=0.3)
        assert all(p is not None and not p.has_audio for p in probes)  # record_audio=False → -an
    # The runs started together, so their files share start seconds (upstream's `%Y%m%d_%H%M%S`
    # names would have overwritten each other); every file survived, and the durations above add up.
    assert len({f.start for f in files}) < len(files)


def test_real_backfill_writes_part_then_renamed(tmp_path: Path, source: Path) -> None:
    gap_start = datetime(2026, 1, 1, 12, 0, 7, 400_000, tzinfo=UTC)
    out = tmp_path / backfill_name(gap_start, new_backfill_token())
    spec = BackfillSpec(input_url=URL, output_path=out, duration_s=2, record_audio=True)
    spec.part_path.write_bytes(b"stale junk from a failed attempt")
    argv = swap_input(build_backfill_argv(spec, ffmpeg_exe()), URL, ["-i", str(source)])
    t0 = time.monotonic()
    proc = subprocess.run(
        argv, env=recorder_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 20
    assert list_segment_files(tmp_path) == []  # the .part is invisible to the indexer
    probe = probe_segment(spec.part_path)
    assert probe is not None and probe.has_audio
    assert probe.duration_s == pytest.approx(2.0, abs=0.15)
    spec.part_path.rename(out)
    [found] = list_segment_files(tmp_path)
    parsed = parse_segment_name(found.name)
    assert parsed is not None and parsed.is_backfill
    assert found.start == gap_start.replace(microsecond=0)


def test_live_view_is_a_second_ignorable_output_of_the_one_input() -> None:
    from pathlib import Path

    from heldar.media.recorder_command import RecorderSpec, build_recorder_argv

    plain = RecorderSpec(input_url="rtsp://cam/x", camera_dir=Path("/r/cam1"), run_id="r1", segment_seconds=2)
    live = RecorderSpec(input_url="rtsp://cam/x", camera_dir=Path("/r/cam1"), run_id="r1", segment_seconds=2,
                        live_dir=Path("/l/odd:dir|x/cam1"))  # fmt: skip
    without = build_recorder_argv(plain, "ffmpeg")
    assert "tee" not in without
    argv = build_recorder_argv(live, "ffmpeg")
    assert argv.count("-i") == 1 and argv[argv.index("-f", argv.index("-i")) + 1] == "tee"
    segment, hls = argv[-1].split("]/r/cam1", 1)[0], argv[-1].rsplit("|[", 1)[1]
    assert "f=segment" in segment and "reset_timestamps=1" in segment and "strftime=1" in segment
    assert hls.startswith("f=hls:onfail=ignore:")
    assert "/l/odd\\:dir\\|x/cam1/index.m3u8" in hls  # separators in a path are escaped for the tee muxer
    assert argv[: argv.index("-f", argv.index("-i"))] == without[: without.index("-f", without.index("-i"))]
