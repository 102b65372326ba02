"""Probe a recorded segment: from its boxes when it is fragmented MP4, else with PyAV (no ffprobe, no decoding).

A fragmented MP4 (what the recorder writes) is read by :mod:`heldar.media.fmp4_probe`: the ``moov`` and each
complete ``moof``, no sample data. Anything else is demuxed with PyAV, and its duration is measured from the
video packets (``max(pts + duration) - min(pts)`` of the first video stream, demuxed without decoding). The
container duration is only a fallback: for fragmented mp4 it can be wrong for a truncated file (a half-written
2 s segment reports 2.0 s while its packets cover 1.1 s), and it can be missing altogether.

:func:`probe_segment` returns ``None`` for anything that is not a usable segment (missing, empty,
unreadable, half-written without a complete fragment, no video stream, duration ≤ 0.05 s, or the
probe ran past its deadline). It never raises for bad media; the reason is logged at debug
level. A ``None`` for a file that is still growing may become a result on a later pass.

:func:`probe_stream` asks a live RTSP stream which codecs it sends (PyAV opens it, reads no further than the
stream description needs, and closes it) so the recorder's command can tag H.265 ``hvc1`` and transcode G.711
audio; :class:`StreamCodecMemo` keeps the answer per recorder so only its first run (or the run after a codec
failure) pays for it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av

from heldar.camera_urls import literal_refusal, mask_url
from heldar.media.fmp4_probe import probe_fmp4

logger = logging.getLogger(__name__)

MIN_DURATION_S = 0.05


@dataclass(frozen=True, slots=True)
class SegmentProbe:
    duration_s: float
    codec: str  # e.g. "h264", "hevc"
    width: int
    height: int
    fps: float | None  # stream avg_frame_rate, else packets/duration; None when unknown
    size_bytes: int
    has_audio: bool
    video_packets: int

    @property
    def bitrate_kbps(self) -> float:
        return self.size_bytes * 8 / self.duration_s / 1000


def _packet_span(
    container: av.container.InputContainer, stream: av.VideoStream, deadline: float
) -> tuple[float | None, int]:
    """Seconds covered by the stream's packets and their count; None when no timed packets."""
    lo: int | None = None
    hi: int | None = None
    count = 0
    for packet in container.demux(stream):
        if time.monotonic() > deadline:
            raise TimeoutError("probe deadline exceeded")
        if packet.pts is None:
            continue  # the flush packet at the end, or an untimed packet
        count += 1
        end = packet.pts + (packet.duration or 0)
        lo = packet.pts if lo is None else min(lo, packet.pts)
        hi = end if hi is None else max(hi, end)
    if lo is None or hi is None or stream.time_base is None:
        return None, count
    return float((hi - lo) * stream.time_base), count


_FILE_PROBE_OPTIONS = {"probesize": "32", "analyzeduration": "0"}


def probe_segment(path: Path | str, timeout_s: float = 10.0) -> SegmentProbe | None:
    """Probe one segment file; ``None`` when it is not (yet) a usable segment (see module doc).

    A fragmented MP4 (every segment the recorder writes) is read from its boxes alone
    (:func:`heldar.media.fmp4_probe.probe_fmp4`); anything else is demuxed with PyAV.
    """
    deadline = time.monotonic() + timeout_s
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        logger.debug("probe %s: cannot stat: %s", path, exc)
        return None
    if size == 0:
        logger.debug("probe %s: empty file", path)
        return None
    try:
        facts = probe_fmp4(path, deadline)
    except TimeoutError:
        logger.warning("probe %s: gave up after %.1f s", path, timeout_s)
        return None
    except OSError as exc:
        logger.debug("probe %s: unreadable: %s", path, exc)
        return None
    except (ValueError, struct.error, IndexError) as exc:  # not a fragmented MP4: demux it instead
        logger.debug("probe %s: not read from its boxes (%s); demuxing", path, exc)
        return _probe_by_demux(path, size, deadline, timeout_s)
    if facts is None or not math.isfinite(facts.duration_s) or facts.duration_s <= MIN_DURATION_S:
        logger.debug("probe %s: no complete fragment of a video track, or too short (%s)", path, facts)
        return None
    return SegmentProbe(
        duration_s=facts.duration_s,
        codec=facts.codec,
        width=facts.width,
        height=facts.height,
        fps=facts.video_samples / facts.duration_s if facts.video_samples > 1 else None,
        size_bytes=size,
        has_audio=facts.has_audio,
        video_packets=facts.video_samples,
    )


def _probe_by_demux(path: Path | str, size: int, deadline: float, timeout_s: float) -> SegmentProbe | None:
    """The PyAV probe: the header for codec and size, every video packet (not decoded) for the span."""
    try:
        # The MP4 header says all a probe needs: without these, find_stream_info decodes frames (about two
        # thirds of a probe's CPU, and the largest per-camera cost left at 4 Mbit/s; same results on 40 files)
        with av.open(os.fspath(path), mode="r", timeout=timeout_s, options=_FILE_PROBE_OPTIONS) as container:
            if not container.streams.video:
                logger.debug("probe %s: no video stream", path)
                return None
            stream = container.streams.video[0]
            ctx = stream.codec_context
            has_audio = bool(container.streams.audio)
            container_duration = (
                container.duration / av.time_base if container.duration and container.duration > 0 else None
            )
            rate: Fraction | None = stream.average_rate
            codec = ctx.name
            width, height = int(ctx.width or 0), int(ctx.height or 0)
            duration, packets = _packet_span(container, stream, deadline)
    except TimeoutError:
        logger.warning("probe %s: gave up after %.1f s", path, timeout_s)
        return None
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        logger.debug("probe %s: unreadable: %s", path, exc)
        return None

    if duration is None:
        duration = container_duration
    if duration is None or not math.isfinite(duration) or duration <= MIN_DURATION_S:
        logger.debug("probe %s: no usable duration (%s)", path, duration)
        return None
    fps: float | None = float(rate) if rate else None
    if fps is None and packets > 1:
        fps = packets / duration
    return SegmentProbe(
        duration_s=duration,
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        size_bytes=size,
        has_audio=has_audio,
        video_packets=packets,
    )


@dataclass(frozen=True, slots=True)
class StreamCodecs:
    """The codecs a live stream sends (FFmpeg names: ``h264``, ``hevc``, ``aac``, ``pcm_alaw`` ...); ``None``:
    no such track, or not known."""

    video: str | None = None
    audio: str | None = None


# The same input restrictions as the recorder's own ffmpeg (security F8): RTSP and its transports only.
_PROBE_PROTOCOLS = "rtsp,rtsps,rtp,srtp,udp,tcp,tls"


def probe_stream(url: str, rtsp_transport: str = "tcp", timeout_s: float = 5.0) -> StreamCodecs | None:
    """The codecs of a live RTSP(S) stream, or ``None`` when it cannot be opened in ``timeout_s`` (or is not
    RTSP, or its host is refused). Never raises for a bad stream; the URL is logged masked."""
    if urlsplit(url).scheme.lower() not in ("rtsp", "rtsps") or literal_refusal(url) is not None:
        return None
    options = {
        "rtsp_transport": rtsp_transport,
        "timeout": str(round(timeout_s * 1_000_000)),
        "protocol_whitelist": _PROBE_PROTOCOLS,
        "analyzeduration": "0",  # the SDP names the codecs; read no more than stream info needs
        "probesize": "32768",
    }
    started = time.monotonic()
    try:
        with av.open(url, mode="r", format="rtsp", options=options, timeout=timeout_s) as container:
            video = container.streams.video[0].codec_context.name if container.streams.video else None
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        logger.info("stream probe %s failed: %s", mask_url(url), type(exc).__name__)
        return None
    logger.info("stream probe %s: video %s, audio %s (%.2f s)", mask_url(url), video, audio,
                time.monotonic() - started)  # fmt: skip
    return StreamCodecs(video=video, audio=audio)


class StreamCodecMemo:
    """A recorder's known stream codecs: probed on first use, kept while the URL stays the same, forgotten after
    a run that failed on the codec (the camera may have been switched to another one)."""

    def __init__(self) -> None:
        self._url: str | None = None
        self._known: StreamCodecs | None = None

    async def get(self, url: str, rtsp_transport: str = "tcp", timeout_s: float = 5.0) -> StreamCodecs:
        if self._known is not None and self._url == url:
            return self._known
        found = await asyncio.to_thread(probe_stream, url, rtsp_transport, timeout_s)
        if found is None:
            return StreamCodecs()  # not known: the recorder copies as it always did; probe again next run
        self._url, self._known = url, found
        return found

    def forget(self) -> None:
        self._url = self._known = None
