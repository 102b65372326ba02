"""Pluggable video sources: what a shared encoder reads (a live ffmpeg encoder, or a file encoded once and
looped), and :class:`StreamProfile`, the per-camera choice of codec, audio and source."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from heldar.fakecam.codecs import VIDEO_CODECS, VideoCodecName, video_codec
from heldar.media.binary import ffmpeg_exe

logger = logging.getLogger(__name__)

AudioCodecName = Literal["pcm_alaw", "pcm_mulaw"]
AUDIO_CODECS: tuple[AudioCodecName, ...] = ("pcm_alaw", "pcm_mulaw")
LOOP_ENCODE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class EncoderSettings:
    """How a shared stream is encoded: H.264 (baseline) or H.265, no B-frames, fixed closed GOP.

    ``bitrate_kbps`` set: average-bitrate mode held by the VBV (``maxrate`` = ``bufsize`` = bitrate), as a camera
    does; unset: constant quality ``crf`` capped at ``maxrate_kbps``. ``audio``: a G.711 track sent with it.
    """

    width: int = 640
    height: int = 360
    fps: int = 15
    gop_seconds: float = 1.0
    crf: int = 30
    maxrate_kbps: int = 1200
    preset: str = "veryfast"
    codec: VideoCodecName = "h264"
    bitrate_kbps: int | None = None
    audio: AudioCodecName | None = None

    def __post_init__(self) -> None:
        video_codec(self.codec)
        if self.audio is not None and self.audio not in AUDIO_CODECS:
            raise ValueError(f"audio must be one of {', '.join(AUDIO_CODECS)}, not {self.audio!r}")
        if self.width <= 0 or self.height <= 0 or self.fps <= 0 or self.gop_seconds <= 0:
            raise ValueError("width, height, fps and gop_seconds must be > 0")
        if self.bitrate_kbps is not None and self.bitrate_kbps <= 0:
            raise ValueError("bitrate_kbps must be > 0")

    @property
    def gop(self) -> int:
        return max(1, round(self.fps * self.gop_seconds))

    def video_args(self, *, realtime: bool) -> list[str]:
        """ffmpeg output options for the video: codec, rate control, fixed closed GOP, no B-frames, parameter
        sets repeated on every keyframe, access unit delimiters; ``realtime``: tuned for a live encoder."""
        if self.bitrate_kbps is not None:
            rate = ["-b:v", f"{self.bitrate_kbps}k", "-maxrate", f"{self.bitrate_kbps}k",
                    "-bufsize", f"{self.bitrate_kbps}k"]  # fmt: skip
        else:
            rate = ["-crf", str(self.crf), "-maxrate", f"{self.maxrate_kbps}k", "-bufsize", f"{self.maxrate_kbps}k"]
        if self.codec == "h265":
            params = (
                f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0:bframes=0:open-gop=0:repeat-headers=1:aud=1"
                ":log-level=error"
            )
            if realtime:
                params += ":pools=1:frame-threads=1"
            tune = ["-tune", "zerolatency"] if realtime else []
            preset = "ultrafast" if realtime else "superfast"
            return ["-c:v", "libx265", "-preset", preset, *tune, "-pix_fmt", "yuv420p", *rate,
                    "-x265-params", params]  # fmt: skip
        tune = ["-tune", "zerolatency", "-threads", "1"] if realtime else []
        profile = "baseline" if realtime else "main"
        return [
            "-c:v", "libx264", "-preset", self.preset, *tune, "-profile:v", profile, "-pix_fmt", "yuv420p", *rate,
            "-g", str(self.gop), "-keyint_min", str(self.gop), "-sc_threshold", "0", "-bf", "0",
            "-x264-params", "aud=1:repeat-headers=1",
        ]  # fmt: skip


class VideoSource:
    """Base class: ffmpeg input arguments (and optional filter graph) for the shared encoder.

    Subclass it for other content (e.g. a scene with moving objects); ``fallback`` is used when
    ffmpeg exits before producing a picture (e.g. a filter that needs a missing font).
    """

    name = "source"

    def input_args(self, settings: EncoderSettings) -> list[str]:
        raise NotImplementedError

    def filter_graph(self, settings: EncoderSettings) -> str | None:
        return None

    def fallback(self) -> VideoSource | None:
        return None


@dataclass(frozen=True)
class LavfiSource(VideoSource):
    """Any lavfi source graph (``mandelbrot``, ``testsrc2``...); ``{w}``, ``{h}``, ``{fps}`` are filled in."""

    graph: str = "testsrc2=size={w}x{h}:rate={fps}"
    vf: str | None = None
    name: str = "lavfi"

    def input_args(self, settings: EncoderSettings) -> list[str]:
        graph = self.graph.format(w=settings.width, h=settings.height, fps=settings.fps)
        return ["-f", "lavfi", "-i", graph]

    def filter_graph(self, settings: EncoderSettings) -> str | None:
        return self.vf


@dataclass(frozen=True)
class TestPatternSource(VideoSource):
    """ffmpeg ``testsrc2`` (moving pattern and frame counter) with an optional UTC wall clock burned in."""

    pattern: str = "testsrc2"
    clock: bool = True
    name: str = "testpattern"

    def input_args(self, settings: EncoderSettings) -> list[str]:
        graph = f"{self.pattern}=size={settings.width}x{settings.height}:rate={settings.fps}"
        return ["-f", "lavfi", "-i", graph]

    def filter_graph(self, settings: EncoderSettings) -> str | None:
        if not self.clock:
            return None
        size = max(12, settings.height // 15)
        return (
            f"drawtext=text='%{{gmtime\\:%Y-%m-%d %H\\\\\\:%M\\\\\\:%S}} UTC':fontsize={size}:"
            "fontcolor=white:box=1:boxcolor=black@0.6:x=8:y=h-th-8"
        )

    def fallback(self) -> VideoSource | None:
        if self.clock:
            return TestPatternSource(pattern=self.pattern, clock=False)
        return None


def default_cache_dir() -> Path:
    """``HELDAR_FAKECAM_CACHE``, else ``$XDG_CACHE_HOME/heldar/fakecam`` (``~/.cache/...``), else the temp dir."""
    configured = os.environ.get("HELDAR_FAKECAM_CACHE", "").strip()
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    candidate = Path(base) / "heldar" / "fakecam"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        if os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / "heldar-fakecam"


@dataclass(frozen=True)
class LoopedFileSource(VideoSource):
    """A clip encoded once (``testsrc2`` with temporal noise, so it needs the bitrate a real scene does) into an
    Annex-B file in the cache, then served in a loop: its access units are re-sent with fresh timestamps, so a
    camera costs no encoding at all. The clip is a whole number of closed GOPs (every one starts with an IDR and
    its parameter sets), so the loop's seam is an ordinary keyframe.

    The file is keyed by everything that changes its bytes (codec, size, fps, GOP, bitrate, seconds, noise).
    """

    seconds: float = 10.0
    noise: int = 12
    cache_dir: str | None = None
    name: str = "looped"

    def clip_path(self, settings: EncoderSettings) -> Path:
        root = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        s = settings
        rate = f"{s.bitrate_kbps}k" if s.bitrate_kbps is not None else f"crf{s.crf}"
        ext = video_codec(s.codec).extension
        name = f"loop_v1_{s.codec}_{s.width}x{s.height}_{s.fps}fps_g{s.gop}_{rate}_{self.seconds:g}s_n{self.noise}"
        return root / f"{name}.{ext}"

    def frames(self, settings: EncoderSettings) -> int:
        """Frames in the clip: whole GOPs."""
        gops = max(1, round(self.seconds * settings.fps / settings.gop))
        return gops * settings.gop

    def encode_argv(self, settings: EncoderSettings, out: Path) -> list[str]:
        s = settings
        graph = f"testsrc2=size={s.width}x{s.height}:rate={s.fps}"
        vf = f"noise=alls={self.noise}:allf=t" if self.noise > 0 else "null"
        return [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph,
            "-vf", vf, "-frames:v", str(self.frames(s)), "-an", *s.video_args(realtime=False),
            "-f", video_codec(s.codec).ffmpeg_format, os.fspath(out),
        ]  # fmt: skip

    def ensure_clip(self, settings: EncoderSettings) -> Path:
        """The cached clip, encoded now when missing (written to a private ``.part`` file, then renamed)."""
        path = self.clip_path(settings)
        if path.exists() and path.stat().st_size > 0:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        logger.info("fakecam: encoding the looped clip %s (once)", path.name)
        try:
            subprocess.run(self.encode_argv(settings, part), check=True, timeout=LOOP_ENCODE_TIMEOUT_S,
                           stdin=subprocess.DEVNULL, capture_output=True)  # fmt: skip
            part.replace(path)
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace").strip()[-500:] if exc.stderr else ""
            raise RuntimeError(f"ffmpeg could not encode the looped clip (exit {exc.returncode}): {detail}") from None
        finally:
            part.unlink(missing_ok=True)
        return path

    def input_args(self, settings: EncoderSettings) -> list[str]:
        raise TypeError("a looped file is not read by a live encoder")


LOOP_DEFAULTS = EncoderSettings(width=1920, height=1080, fps=15, gop_seconds=1.0, bitrate_kbps=4000)


@dataclass(frozen=True)
class StreamProfile:
    """What one simulated camera sends; cameras with equal profiles share one encoder (or one loop).

    * ``codec``: ``h264`` or ``h265``.
    * ``audio``: ``pcm_alaw`` (RTP payload type 8) or ``pcm_mulaw`` (0): a G.711 8 kHz mono tone as a second track.
    * ``looped``: serve a clip pre-encoded once (default 1920x1080, 15 fps, 1 s GOP, 4000 kbit/s: a field
      camera) in a loop instead of a live encoder; no clock is burnt in then.
    * ``width``/``height``/``fps``/``bitrate_kbps``/``gop_seconds``: override the simulator's (or the loop's)
      defaults; ``None`` keeps them.
    """

    codec: VideoCodecName = "h264"
    audio: AudioCodecName | None = None
    looped: bool = False
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    bitrate_kbps: int | None = None
    gop_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"codec must be one of {', '.join(VIDEO_CODECS)}, not {self.codec!r}")
        if self.audio is not None and self.audio not in AUDIO_CODECS:
            raise ValueError(f"audio must be one of {', '.join(AUDIO_CODECS)}, not {self.audio!r}")

    @classmethod
    def from_options(cls, data: dict[str, Any]) -> StreamProfile | None:
        """From control-API/CLI options (``codec``, ``audio``, ``looped``, sizes); None when none is given."""
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in names and v is not None}
        if not given:
            return None
        for key in ("width", "height", "fps", "bitrate_kbps"):
            if key in given and (not isinstance(given[key], int) or isinstance(given[key], bool) or given[key] <= 0):
                raise ValueError(f"{key} must be a positive integer")
        if "gop_seconds" in given and (not isinstance(given["gop_seconds"], int | float) or given["gop_seconds"] <= 0):
            raise ValueError("gop_seconds must be a positive number")
        if "looped" in given and not isinstance(given["looped"], bool):
            raise ValueError("looped must be a boolean")
        return cls(**given)

    def settings(self, base: EncoderSettings) -> EncoderSettings:
        """The encoder settings: ``base`` (or the loop defaults when looped) with this profile's choices."""
        start = LOOP_DEFAULTS if self.looped else base
        overrides: dict[str, Any] = {"codec": self.codec, "audio": self.audio}
        for key in ("width", "height", "fps", "bitrate_kbps", "gop_seconds"):
            value = getattr(self, key)
            if value is not None:
                overrides[key] = value
        return replace(start, **overrides)

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
