"""Stills: a JPEG of a recorded instant (PyAV, only the GOP that holds it decoded) or a live grab (ffmpeg).

:func:`recorded_jpeg` seeks to the keyframe at or before the offset and decodes forward to the frame on screen
at that instant (the last frame whose time is not after it), so its cost is one GOP whatever the segment's
length. :func:`live_jpeg` reads one frame from the camera's RTSP URL (the sub stream when the camera has one).
Both are blocking or subprocess work: run them in a thread / under a media-job slot.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import av

from heldar.media.ffmpeg_run import run_ffmpeg

logger = logging.getLogger(__name__)

JPEG_QUALITY = 85
RECORDED_TIMEOUT_S = 20.0
LIVE_TIMEOUT_S = 20.0


class NoFrame(LookupError):
    """The file holds no decodable frame at that offset."""


def encode_jpeg(frame: av.VideoFrame, quality: int = JPEG_QUALITY) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise NoFrame("JPEG encoding failed")
    return bytes(buf)


def frame_at(path: Path, offset_s: float, timeout_s: float = RECORDED_TIMEOUT_S) -> tuple[av.VideoFrame, float, int]:
    """(the frame on screen ``offset_s`` into the file, its time in s, frames decoded to reach it)."""
    deadline = time.monotonic() + timeout_s
    with av.open(str(path), mode="r", timeout=timeout_s) as container:
        if not container.streams.video:
            raise NoFrame("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        tb = stream.time_base
        assert tb is not None
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        target = start + max(0.0, offset_s)
        container.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
        chosen: av.VideoFrame | None = None
        chosen_t = 0.0
        decoded = 0
        for frame in container.decode(stream):
            decoded += 1
            if time.monotonic() > deadline:
                raise TimeoutError("snapshot decode deadline exceeded")
            if frame.pts is None:
                continue
            t = float(frame.pts * tb)
            if t > target + 1e-3:
                if chosen is None:  # the seek landed after the target (offset before the first frame)
                    chosen, chosen_t = frame, t
                break
            chosen, chosen_t = frame, t
        if chosen is None:
            raise NoFrame(f"no frame at {offset_s:.3f} s")
        return chosen, chosen_t - start, decoded


def recorded_jpeg(path: Path, offset_s: float, quality: int = JPEG_QUALITY) -> bytes:
    try:
        frame, _, _ = frame_at(path, offset_s)
    except av.FFmpegError as exc:
        raise NoFrame(f"undecodable: {exc.__class__.__name__}") from None
    return encode_jpeg(frame, quality)


def live_grab_argv(ffmpeg: str, url: str, transport: str = "tcp", timeout_s: float = 10.0) -> list[str]:
    if url.startswith("-"):
        raise ValueError("input URL must not start with '-'")
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if url.lower().startswith(("rtsp://", "rtsps://")):
        args += ["-rtsp_transport", transport]
    args += ["-timeout", str(round(timeout_s * 1_000_000)), "-i", url]
    args += ["-frames:v", "1", "-an", "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", "pipe:1"]
    return args


class GrabFailed(RuntimeError):
    pass


async def live_jpeg(ffmpeg: str, url: str, transport: str = "tcp", timeout_s: float = LIVE_TIMEOUT_S) -> bytes:
    """One JPEG from the live stream; :class:`GrabFailed` when the camera gives none in time."""
    argv = live_grab_argv(ffmpeg, url, transport, timeout_s=min(10.0, timeout_s))
    try:
        code, out, _ = await run_ffmpeg(argv, timeout_s, want_stdout=True)
    except TimeoutError:
        raise GrabFailed("live grab timed out") from None
    if code != 0 or not out.startswith(b"\xff\xd8"):
        # ffmpeg's message may carry the URL (credentials): log only its exit status.
        logger.warning("live grab: ffmpeg exited %s with %d bytes", code, len(out))
        raise GrabFailed(f"ffmpeg exited {code}")
    return out
