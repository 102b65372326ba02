"""The one shared encoder: an ffmpeg process producing Annex-B H.264, split into access units,
stamped with wall-clock capture times, packetized once, kept in a footage ring buffer and
fanned out to subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import random
import signal
import sys
from collections import deque
from collections.abc import Callable

from heldar.fakecam.h264 import (
    NAL_PPS,
    NAL_SPS,
    RTP_CLOCK,
    AccessUnit,
    AnnexBParser,
    is_keyframe,
    nal_type,
    now_ticks,
    packetize,
    rtcp_sender_report,
)
from heldar.fakecam.source import EncoderSettings, TestPatternSource, VideoSource
from heldar.media.binary import ffmpeg_exe

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
RESYNC_THRESHOLD_S = 0.5
SR_INTERVAL_S = 5.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask the kernel to SIGKILL the child when the thread that forked it dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


class SharedEncoder:
    """Runs ffmpeg once and publishes :class:`AccessUnit` objects.

    * ``gop``: the AUs since the latest keyframe, with shared RTP packets (for instant start).
    * ``footage``: a ring buffer of the last ``replay_seconds`` of AUs (NALs only), for replay.
    * subscribers are called synchronously in the event loop for each new AU.
    """

    def __init__(
        self,
        settings: EncoderSettings | None = None,
        source: VideoSource | None = None,
        replay_seconds: float = 15 * 60,
    ) -> None:
        self.settings = settings or EncoderSettings()
        self.source: VideoSource = source or TestPatternSource()
        self.replay_seconds = replay_seconds
        self.ssrc = random.getrandbits(32)
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.gop: list[AccessUnit] = []
        self.footage: deque[AccessUnit] = deque()
        self.subscribers: list[Callable[[AccessUnit], None]] = []
        self.frames = 0
        self.restarts = 0
        self._seq = random.getrandbits(16)
        self._packets_sent = 0
        self._octets_sent = 0
        self._last_sr_wall = 0.0
        self._last_ticks: int | None = None
        self._frame_ticks = RTP_CLOCK / self.settings.fps
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.first_keyframe = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    def command(self, source: VideoSource | None = None) -> list[str]:
        src = source or self.source
        s = self.settings
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-re"]
        cmd += src.input_args(s)
        vf = src.filter_graph(s)
        if vf:
            cmd += ["-vf", vf]
        cmd += [
            "-an",
            "-c:v", "libx264",
            "-preset", s.preset,
            "-tune", "zerolatency",
            "-profile:v", "baseline",
            "-pix_fmt", "yuv420p",
            "-crf", str(s.crf),
            "-maxrate", f"{s.maxrate_kbps}k",
            "-bufsize", f"{s.maxrate_kbps}k",
            "-g", str(s.gop),
            "-keyint_min", str(s.gop),
            "-sc_threshold", "0",
            "-bf", "0",
            "-threads", "1",
            "-x264-params", "aud=1:repeat-headers=1",
            "-f", "h264",
            "pipe:1",
        ]  # fmt: skip
        return cmd

    async def start(self, wait_s: float = 10.0) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="fakecam-encoder")
        try:
            await asyncio.wait_for(self.first_keyframe.wait(), wait_s)
        except TimeoutError:
            await self.stop()
            raise RuntimeError("fakecam encoder produced no keyframe") from None

    async def stop(self) -> None:
        self._stopping = True
        await self._kill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)

    async def _run(self) -> None:
        source = self.source
        while not self._stopping:
            produced = await self._run_once(source)
            if self._stopping:
                break
            if not produced and source.fallback() is not None:
                logger.warning("fakecam source %s produced nothing; falling back", source.name)
                source = source.fallback() or source
                continue
            self.restarts += 1
            logger.warning("fakecam encoder exited; restarting (restart %s)", self.restarts)
            await asyncio.sleep(1.0)

    async def _run_once(self, source: VideoSource) -> bool:
        cmd = self.command(source)
        logger.info("starting fakecam encoder: %s", " ".join(cmd))
        kwargs = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = _die_with_parent
        self._proc = proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            **kwargs,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.create_task(self._drain_stderr(proc.stderr))
        parser = AnnexBParser()
        self._last_ticks = None
        produced = False
        try:
            while True:
                chunk = await proc.stdout.read(256 * 1024)
                if not chunk:
                    break
                for nals in parser.feed(chunk):
                    if self._publish(nals, parser):
                        produced = True
        finally:
            await self._kill()
            stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stderr_task
        return produced

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            logger.warning("fakecam ffmpeg: %s", line.decode(errors="replace").rstrip())

    # ------------------------------------------------------------------ access units
    def _stamp(self) -> int:
        """Capture time in 90 kHz ticks: a regular frame clock, resynced to the wall clock on drift."""
        arrival = now_ticks() - round(self._frame_ticks)  # the AU completes one frame late
        if self._last_ticks is not None:
            ideal = self._last_ticks + round(self._frame_ticks)
            if abs(arrival - ideal) < RESYNC_THRESHOLD_S * RTP_CLOCK:
                self._last_ticks = ideal
                return ideal
            logger.info("fakecam encoder clock resync by %.3f s", (arrival - ideal) / RTP_CLOCK)
        self._last_ticks = arrival
        return arrival

    def _publish(self, nals: list[bytes], parser: AnnexBParser) -> bool:
        key = is_keyframe(nals)
        if key:
            kinds = {nal_type(n) for n in nals}
            prefix = []
            if NAL_SPS not in kinds and parser.sps is not None:
                prefix.append(parser.sps)
            if NAL_PPS not in kinds and parser.pps is not None:
                prefix.append(parser.pps)
            nals = prefix + nals
            self.sps, self.pps = parser.sps, parser.pps
        elif not self.gop:
            return False  # nothing is decodable before the first keyframe
        ticks = self._stamp()
        au = AccessUnit(nals=nals, ticks=ticks, key=key)
        au.first_seq = self._seq
        au.packets = packetize(nals, au.rtp_ts, self._seq, self.ssrc)
        self._seq = (self._seq + len(au.packets)) & 0xFFFF
        wall = au.wall
        if key and wall - self._last_sr_wall >= SR_INTERVAL_S:
            au.rtcp = rtcp_sender_report(self.ssrc, wall, au.rtp_ts, self._packets_sent, self._octets_sent)
            self._last_sr_wall = wall
        self._packets_sent += len(au.packets)
        self._octets_sent += sum(len(p) - 12 for p in au.packets)
        if key:
            for old in self.gop:
                old.release_packets()
            self.gop = [au]
        else:
            self.gop.append(au)
        self.footage.append(au)
        horizon = wall - self.replay_seconds
        while self.footage and self.footage[0].wall < horizon:
            self.footage.popleft()
        self.frames += 1
        if key and not self.first_keyframe.is_set():
            self.first_keyframe.set()
        for callback in list(self.subscribers):
            try:
                callback(au)
            except Exception:
                logger.exception("fakecam subscriber failed")
        return True

    def footage_window(self, start: float | None, end: float | None) -> list[AccessUnit]:
        """AUs from the keyframe at or before ``start`` up to (excluding) ``end`` (Unix seconds)."""
        aus = list(self.footage)
        if not aus:
            return []
        begin = 0
        if start is not None:
            begin = -1
            for i, au in enumerate(aus):
                if au.key and au.wall <= start:
                    begin = i
                elif au.wall > start:
                    break
            if begin < 0:
                begin = next((i for i, au in enumerate(aus) if au.key), len(aus))
        else:
            begin = next((i for i, au in enumerate(aus) if au.key), len(aus))
        out = []
        for au in aus[begin:]:
            if end is not None and au.wall >= end:
                break
            out.append(au)
        return out

    @property
    def footage_span(self) -> tuple[float, float] | None:
        if not self.footage:
            return None
        return self.footage[0].wall, self.footage[-1].wall
