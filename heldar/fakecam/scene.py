"""A scene with moving objects for perception tests: walking figures and a sliding box.

The figures are drawn solid (head, torso, arms, legs) at about 45-55 % of the frame height; OpenCV's HOG
people detector recognises them (no person photograph ships offline, so this is what the ``person``
analyzer is tested on), and MOG2 motion sees every moving thing. The clip is rendered once with
OpenCV into ``<cache>/scene_<w>x<h>_<fps>_<seconds>.mp4`` and looped by the shared encoder; objects wrap
around so the loop has no jump.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heldar.fakecam.source import EncoderSettings, TestPatternSource, VideoSource
from heldar.media.binary import ffmpeg_exe

logger = logging.getLogger(__name__)


def draw_figure(img: Any, cx: float, top: float, height: float, color: tuple[int, int, int]) -> None:
    """A standing human silhouette (8 head-units tall) centred on ``cx`` with its head at ``top``."""
    import cv2
    import numpy as np

    u = height / 8.0

    def p(x: float, y: float) -> tuple[int, int]:
        return (int(cx + x * u), int(top + y * u))

    cv2.ellipse(img, p(0, 0.6), (int(u * 0.45), int(u * 0.6)), 0, 0, 360, color, -1)
    cv2.line(img, p(0, 1.2), p(0, 1.5), color, max(1, int(u * 0.35)))
    torso = np.array([p(-1.0, 1.5), p(1.0, 1.5), p(0.8, 4.2), p(-0.8, 4.2)], np.int32)
    cv2.fillPoly(img, [torso], color)
    cv2.line(img, p(-0.95, 1.7), p(-1.3, 4.3), color, max(1, int(u * 0.45)))
    cv2.line(img, p(0.95, 1.7), p(1.3, 4.3), color, max(1, int(u * 0.45)))
    cv2.line(img, p(-0.45, 4.1), p(-0.6, 8.0), color, max(1, int(u * 0.6)))
    cv2.line(img, p(0.45, 4.1), p(0.6, 8.0), color, max(1, int(u * 0.6)))


def render_frame(width: int, height: int, t: float, period: float) -> Any:
    """The scene at time ``t`` (seconds) of a loop of ``period`` seconds, as a BGR image."""
    import cv2
    import numpy as np

    img = np.full((height, width, 3), 170, np.uint8)
    img[int(height * 0.85) :] = 120
    fig_h = height * 0.5
    fig_w = fig_h / 8 * 2.8
    span = width + fig_w
    for offset, colour, top in ((0.0, (40, 40, 40), 0.08), (0.5, (90, 60, 30), 0.2)):
        x = ((offset + t / period) % 1.0) * span - fig_w / 2
        draw_figure(img, x, height * top, fig_h, colour)
    box = int(height * 0.12)
    bx = int((1.0 - (t / period) % 1.0) * (width + box)) - box
    cv2.rectangle(img, (bx, int(height * 0.88)), (bx + box, int(height * 0.88) + box // 2), (255, 255, 255), -1)
    return img


def render_clip(path: Path, width: int, height: int, fps: int, seconds: float) -> Path:
    """Encode the loop with ffmpeg (rawvideo on stdin); written atomically, reused when present."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part.mp4")
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
        "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0", "-an", "-c:v", "libx264", "-preset", "veryfast",
        "-crf", "20", "-pix_fmt", "yuv420p", "-g", str(fps), str(part),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    frames = max(1, round(seconds * fps))
    for i in range(frames):
        proc.stdin.write(render_frame(width, height, i / fps, seconds).tobytes())
    proc.stdin.close()
    if proc.wait(timeout=120) != 0:
        raise RuntimeError(f"ffmpeg could not encode the scene clip (exit {proc.returncode})")
    part.replace(path)
    return path


@dataclass(frozen=True)
class SceneSource(VideoSource):
    """Moving figures and a sliding box, looped; falls back to the test pattern if rendering fails."""

    seconds: float = 8.0
    cache_dir: str | None = None
    name: str = "scene"

    def clip_path(self, settings: EncoderSettings) -> Path:
        root = Path(self.cache_dir or Path(tempfile.gettempdir()) / "heldar-scene")
        return root / f"scene_{settings.width}x{settings.height}_{settings.fps}_{self.seconds:g}.mp4"

    def input_args(self, settings: EncoderSettings) -> list[str]:
        path = render_clip(self.clip_path(settings), settings.width, settings.height, settings.fps, self.seconds)
        return ["-stream_loop", "-1", "-i", str(path)]

    def fallback(self) -> VideoSource | None:
        return TestPatternSource(clock=False)
