"""ffmpeg command lines for the recorder and the ANR back-fill.

Both are stream copies (no decode). The URL is always one argv element, never a shell string;
run the child with :func:`recorder_env` (``TZ=UTC``, so ``-strftime`` names are UTC), stdin and
stdout to null and stderr piped.

Field fidelity, when the stream's codecs are known (:func:`heldar.media.probe.probe_stream`): H.265 video is
tagged ``hvc1`` (parameter sets in the sample description, which Safari and QuickTime require; ffmpeg's default
``hev1`` does not play there), and audio MP4 cannot carry as is (G.711 ``pcm_alaw``/``pcm_mulaw`` and the other
camera codecs) is transcoded to AAC when ``record_audio`` is on, instead of failing at mux time. The audio
encode is the only decode in the recorder: 8 kHz mono costs a fraction of a millisecond per second.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from heldar.camera_urls import literal_refusal
from heldar.media.segment_names import segment_pattern

logger = logging.getLogger(__name__)

RtspTransport = Literal["tcp", "udp"]

MIN_SEGMENT_SECONDS = 2
MAX_SEGMENT_SECONDS = 3600
FRAGMENTED_MP4_FLAGS = "+frag_keyframe+empty_moov+default_base_moof"
_LOGLEVELS = frozenset({"quiet", "panic", "fatal", "error", "warning", "info", "verbose", "debug"})
_RTSP_SCHEMES = frozenset({"rtsp", "rtsps"})


def _check_common(url: str, transport: str, timeout_s: float, loglevel: str) -> None:
    if not url or url != url.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError("input URL is empty or contains whitespace/control characters")
    if url.startswith("-"):
        raise ValueError("input URL must not start with '-'")
    if transport not in ("tcp", "udp"):
        raise ValueError(f"rtsp_transport must be 'tcp' or 'udp', not {transport!r}")
    if not timeout_s > 0:
        raise ValueError("timeout_s must be > 0")
    if loglevel not in _LOGLEVELS:
        raise ValueError(f"unknown ffmpeg loglevel {loglevel!r}")


# Camera input may not lead ffmpeg elsewhere (security F8): only the protocols the scheme needs, no HTTP
# redirects, and for http(s) replay no playlist or concat demuxer (an HLS answer could list further URLs).
# rtsp is pinned with -f rtsp (no probing). ffmpeg's RTSP client has no switch against RTSP 3xx; the
# whitelist keeps a redirect on rtsp.
_RTSP_INPUT_OPTIONS = ["-protocol_whitelist", "rtsp,rtsps,rtp,srtp,udp,tcp,tls", "-f", "rtsp"]
_HTTP_INPUT_OPTIONS = [
    "-protocol_whitelist", "http,https,tcp,tls",
    "-max_redirects", "0",
    "-format_whitelist", "mov,mp4,m4a,3gp,3g2,mj2,mpegts,matroska,webm,flv,h264,hevc,avi",
]  # fmt: skip


def _input_args(url: str, transport: str, timeout_s: float) -> list[str]:
    refused = literal_refusal(url)  # a metadata address is never a camera, whatever the row says
    if refused is not None:
        raise ValueError(f"input URL host is {refused}")
    args: list[str] = []
    if urlsplit(url).scheme.lower() in _RTSP_SCHEMES:
        args += ["-rtsp_transport", transport, *_RTSP_INPUT_OPTIONS]
    elif urlsplit(url).scheme.lower() in ("http", "https"):
        args += _HTTP_INPUT_OPTIONS
    # Socket I/O timeout in microseconds (rtsp and http): a silent peer makes ffmpeg exit.
    args += ["-timeout", str(round(timeout_s * 1_000_000)), "-i", url]
    return args


HEVC_CODECS = frozenset({"hevc", "h265"})
# Audio codecs the MP4 muxer takes as they come (stream copy); anything else known is transcoded to AAC.
MP4_COPY_AUDIO = frozenset({"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3"})
G711_AUDIO = frozenset({"pcm_alaw", "pcm_mulaw"})
AAC_BITRATE = "64k"


def audio_needs_transcode(audio_codec: str | None) -> bool:
    """True for a known audio codec MP4 cannot carry as is (G.711, G.726, L16, ...); unknown: copy, as before."""
    return audio_codec is not None and audio_codec.lower() not in MP4_COPY_AUDIO


def _stream_args(record_audio: bool, video_codec: str | None = None, audio_codec: str | None = None) -> list[str]:
    args = ["-map", "0:v", "-c", "copy"]
    if video_codec is not None and video_codec.lower() in HEVC_CODECS:
        args += ["-tag:v", "hvc1"]
    if not record_audio:
        return [*args, "-an"]
    args += ["-map", "0:a?"]
    if audio_needs_transcode(audio_codec):
        return [*args, "-c:a", "aac", "-b:a", AAC_BITRATE]
    return [*args, "-c:a", "copy"]


@dataclass(frozen=True, slots=True)
class RecorderSpec:
    """One continuous recorder run.

    ``segment_seconds`` is clamped to 2..3600 on the command line; ``timeout_s`` is the socket
    I/O timeout (always set, so a silent camera ends the run instead of hanging it).
    """

    input_url: str
    camera_dir: Path
    run_id: str
    segment_seconds: int = 60
    rtsp_transport: RtspTransport = "tcp"
    record_audio: bool = False
    timeout_s: float = 5.0
    loglevel: str = "warning"
    live_dir: Path | None = None  # also write a live HLS playlist here (same stream copy; media plane)
    live_list_size: int = 6
    video_codec: str | None = None  # the stream's codecs when known (probe): H.265 is tagged hvc1
    audio_codec: str | None = None  # G.711 etc. is transcoded to AAC when record_audio

    def __post_init__(self) -> None:
        _check_common(self.input_url, self.rtsp_transport, self.timeout_s, self.loglevel)

    @property
    def effective_segment_seconds(self) -> int:
        return min(max(int(self.segment_seconds), MIN_SEGMENT_SECONDS), MAX_SEGMENT_SECONDS)

    @property
    def pattern(self) -> str:
        return segment_pattern(self.camera_dir, self.run_id)


LIVE_PLAYLIST = "index.m3u8"


def _tee_escape(value: str) -> str:
    """A value inside a tee slave specification: ``\\``, ``:``, ``|``, ``[``, ``]`` and ``,`` escaped."""
    for ch in ("\\", ":", "|", "[", "]", ","):
        value = value.replace(ch, "\\" + ch)
    return value


def live_hls_options(spec: RecorderSpec) -> list[tuple[str, str]]:
    """The live HLS muxer's options (one-GOP MPEG-TS parts ``p<n>.ts`` beside ``index.m3u8`` in ``live_dir``)."""
    assert spec.live_dir is not None
    return [
        ("hls_time", "1"),
        ("hls_list_size", str(spec.live_list_size)),
        ("hls_flags", "delete_segments+omit_endlist+independent_segments+temp_file"),
        ("hls_segment_filename", os.path.join(os.fspath(spec.live_dir), "p%d.ts")),
    ]


def _live_argv(spec: RecorderSpec, ffmpeg: str) -> list[str]:
    """The recorder with a second, ignorable output: the same packets into a rolling live HLS playlist.

    One input (one RTSP session), no decode: the tee muxer writes the segments exactly as without live view,
    plus MPEG-TS parts of about one GOP. ``onfail=ignore``: a failing live output never stops the recording.
    """
    assert spec.live_dir is not None
    live = os.fspath(spec.live_dir)
    segment = (
        f"[f=segment:segment_time={spec.effective_segment_seconds}:segment_format=mp4"
        f":segment_format_options=movflags={FRAGMENTED_MP4_FLAGS}\\:flush_packets=1"
        f":reset_timestamps=1:strftime=1]{_tee_escape(spec.pattern)}"
    )
    options = ":".join(f"{key}={_tee_escape(value)}" for key, value in live_hls_options(spec))
    hls = f"[f=hls:onfail=ignore:{options}]{_tee_escape(os.path.join(live, LIVE_PLAYLIST))}"
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", spec.loglevel,
        *_input_args(spec.input_url, spec.rtsp_transport, spec.timeout_s),
        *_stream_args(spec.record_audio, spec.video_codec, spec.audio_codec),
        "-f", "tee", f"{segment}|{hls}",
    ]  # fmt: skip


def build_recorder_argv(spec: RecorderSpec, ffmpeg: str) -> list[str]:
    """argv for a continuous segmenting recorder (stream copy into fragmented-mp4 segments)."""
    if spec.live_dir is not None:
        return _live_argv(spec, ffmpeg)
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        spec.loglevel,
        *_input_args(spec.input_url, spec.rtsp_transport, spec.timeout_s),
        *_stream_args(spec.record_audio, spec.video_codec, spec.audio_codec),
        "-f",
        "segment",
        "-segment_time",
        str(spec.effective_segment_seconds),
        "-segment_format",
        "mp4",
        "-segment_format_options",
        # flush_packets: each keyframe fragment reaches the disk at once (not at segment end), so the
        # progress watchdog sees bytes every GOP and a crash loses at most one fragment.
        f"movflags={FRAGMENTED_MP4_FLAGS}:flush_packets=1",
        "-reset_timestamps",
        "1",
        "-strftime",
        "1",
        spec.pattern,
    ]


@dataclass(frozen=True, slots=True)
class BackfillSpec:
    """One ANR back-fill download: ``duration_s`` seconds from a replay URL into ``output_path``.

    ffmpeg writes :attr:`part_path` (``<output>.part``); the caller renames it to ``output_path``
    only after a successful, non-empty run, so the indexer never sees a half-written file.
    """

    input_url: str
    output_path: Path
    duration_s: float
    rtsp_transport: RtspTransport = "tcp"
    record_audio: bool = False
    timeout_s: float = 5.0
    loglevel: str = "warning"
    video_codec: str | None = None
    audio_codec: str | None = None

    def __post_init__(self) -> None:
        _check_common(self.input_url, self.rtsp_transport, self.timeout_s, self.loglevel)
        if not self.duration_s > 0:
            raise ValueError("duration_s must be > 0")

    @property
    def part_path(self) -> Path:
        return self.output_path.with_name(self.output_path.name + ".part")


def build_backfill_argv(spec: BackfillSpec, ffmpeg: str) -> list[str]:
    """argv for an ANR back-fill: a bounded stream copy into a faststart mp4 ``.part`` file.

    ``-y`` replaces a stale ``.part`` left by an earlier failed attempt; ``-f mp4`` is needed
    because ffmpeg cannot guess the format from the ``.part`` extension.
    """
    seconds = max(float(spec.duration_s), 1.0)
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        spec.loglevel,
        *_input_args(spec.input_url, spec.rtsp_transport, spec.timeout_s),
        "-t",
        f"{seconds:.3f}".rstrip("0").rstrip("."),
        *_stream_args(spec.record_audio, spec.video_codec, spec.audio_codec),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        "-y",
        os.fspath(spec.part_path),
    ]


# What an ffmpeg child inherits: locale, paths and TLS trust only. Everything else (HELDAR_DATABASE_URL,
# HELDAR_SECRET_KEY, cloud credentials a node was given) stays in the parent (security F16).
CHILD_ENV_KEEP = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")


def recorder_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an ffmpeg child: the allowed variables of ``base`` (default ``os.environ``), ``TZ=UTC``."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k in CHILD_ENV_KEEP or k.startswith("LC_")}
    env["TZ"] = "UTC"
    return env
