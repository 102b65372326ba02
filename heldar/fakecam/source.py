"""Pluggable video sources: what the one shared ffmpeg encoder reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderSettings:
    """How the shared stream is encoded (H.264 baseline, no B-frames, fixed GOP)."""

    width: int = 640
    height: int = 360
    fps: int = 15
    gop_seconds: float = 1.0
    crf: int = 30
    maxrate_kbps: int = 1200
    preset: str = "veryfast"

    @property
    def gop(self) -> int:
        return max(1, round(self.fps * self.gop_seconds))


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
