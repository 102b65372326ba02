"""Is a camera's stream reachable, and what does it carry? One bounded ffmpeg run.

``ffmpeg -rtsp_transport T -timeout 5000000 -i URL -map 0:v:0 -frames:v 1 -c copy -f null -`` opens
the stream, reads one video packet and exits; the input description on stderr gives the codec and
size. ffmpeg runs as a subprocess (not PyAV in a thread) so the overall deadline is enforced by
killing it: a camera that accepts the connection and then never answers cannot hold the caller
longer than ``deadline_s``.

The result never carries credentials: the URL is masked and the error text is masked too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from heldar.camera_urls import mask_text, mask_url
from heldar.media.binary import ffmpeg_exe
from heldar.media.ffmpeg_errors import classify_exit
from heldar.media.recorder_command import recorder_env

logger = logging.getLogger(__name__)

DEADLINE_S = 12.0
SOCKET_TIMEOUT_US = 5_000_000
STDERR_LIMIT = 64 * 1024

_VIDEO_RE = re.compile(r"Stream #\d+:\d+[^:\n]*: Video: (?P<codec>[A-Za-z0-9_]+)(?P<rest>[^\n]*)")
_SIZE_RE = re.compile(r"(?:^|[\s,(])(?P<w>\d{2,5})x(?P<h>\d{2,5})(?=[\s,\[]|$)")


@dataclass(frozen=True, slots=True)
class StreamInfo:
    codec: str
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class StreamTestResult:
    reachable: bool
    url: str | None  # masked
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    error_code: str | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        if self.reachable:
            return {"reachable": True, "codec": self.codec, "width": self.width, "height": self.height, "url": self.url}
        return {"reachable": False, "error": self.error, "error_code": self.error_code, "url": self.url}


def parse_video_stream(stderr: str) -> StreamInfo | None:
    """The first input video stream ffmpeg described (``Stream #0:0: Video: h264 (High), ..., 640x360``)."""
    for match in _VIDEO_RE.finditer(stderr):
        # "Input #0" streams come before any "Output #0" ones; the output of -f null repeats the codec.
        preceding = stderr[: match.start()]
        if preceding.rfind("Output #") > preceding.rfind("Input #"):
            continue
        size = _SIZE_RE.search(match.group("rest"))
        width = int(size.group("w")) if size else None
        height = int(size.group("h")) if size else None
        return StreamInfo(match.group("codec"), width, height)
    return None


def probe_command(url: str, transport: str = "tcp", socket_timeout_us: int = SOCKET_TIMEOUT_US) -> list[str]:
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "info"]
    if url.lower().startswith(("rtsp://", "rtsps://")):
        args += ["-rtsp_transport", transport, "-protocol_whitelist", "rtsp,rtsps,rtp,srtp,udp,tcp,tls"]
    args += ["-timeout", str(socket_timeout_us), "-i", url, "-map", "0:v:0", "-frames:v", "1", "-c", "copy"]
    return [*args, "-f", "null", "-"]


async def check_stream(
    url: str,
    *,
    transport: str = "tcp",
    secrets: tuple[str | None, ...] = (),
    deadline_s: float = DEADLINE_S,
    socket_timeout_us: int = SOCKET_TIMEOUT_US,
) -> StreamTestResult:
    """Open ``url`` once within ``deadline_s``; never raises for an unreachable or broken stream."""
    masked_url = mask_url(url)
    started = time.monotonic()

    def clean(text: str) -> str:
        return mask_text(text, secrets)

    try:
        proc = await asyncio.create_subprocess_exec(
            *probe_command(url, transport, socket_timeout_us),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=recorder_env(),
        )
    except OSError as exc:
        logger.error("stream test: cannot start ffmpeg: %s", exc)
        return StreamTestResult(False, masked_url, error="cannot start ffmpeg", error_code="exited")

    timed_out = False
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=deadline_s)
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        # The pipe closes when the process dies; what it printed so far still tells why.
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=2.0)
        except TimeoutError:
            err = b""
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    elapsed = time.monotonic() - started
    stderr = err[-STDERR_LIMIT:].decode("utf-8", "replace")
    info = parse_video_stream(stderr)

    if not timed_out and proc.returncode == 0 and info is not None:
        logger.info("stream test %s: %s %sx%s in %.2fs", masked_url, info.codec, info.width, info.height, elapsed)
        return StreamTestResult(True, masked_url, info.codec, info.width, info.height, elapsed_s=elapsed)

    if timed_out:
        code, message = "timeout", f"no answer from the camera within {deadline_s:g} s"
        if info is not None:
            message = f"the stream opened ({info.codec}) but sent no video within {deadline_s:g} s"
    elif proc.returncode == 0:
        code, message = "codec", "the stream has no video track"
    else:
        cause = classify_exit(stderr, proc.returncode, killed_for_stall=False, produced_output=False)
        code, message = cause.code, cause.message
    message = clean(message)
    logger.info("stream test %s: unreachable (%s) in %.2fs", masked_url, code, elapsed)
    return StreamTestResult(False, masked_url, error=message, error_code=code, elapsed_s=elapsed)
