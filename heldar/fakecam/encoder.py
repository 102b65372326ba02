"""A shared encoder: an ffmpeg process producing Annex-B H.264 or H.265 (or a pre-encoded clip sent in a
loop), split into access units, stamped with wall-clock capture times, packetized once (with the G.711
audio that goes with each picture, when asked), kept in a footage ring buffer and fanned out to
subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from heldar.fakecam.audio import AudioTrack
from heldar.fakecam.codecs import video_codec
from heldar.fakecam.h264 import (
    MAX_RTP_PAYLOAD,
    RTP_CLOCK,
    AccessUnit,
    AnnexBParser,
    now_ticks,
    rtcp_sender_report,
    rtp_packets,
)
from heldar.fakecam.source import EncoderSettings, LoopedFileSource, TestPatternSource, VideoSource
from heldar.media.binary import ffmpeg_exe

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
RESYNC_THRESHOLD_S = 0.5
RESYNC_FORWARD_S = 2.5  # a stall shorter than this is caught up by ffmpeg -re's burst, not by a jump
AHEAD_SLEW_S = 1.0  # ffmpeg's initial read burst (0.5 s) and jitter stay below this
SR_INTERVAL_S = 5.0
START_WAIT_S = 10.0
LOOP_START_WAIT_S = 300.0  # a looped clip not in the cache yet is encoded first (1080p H.265: tens of seconds)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask the kernel to SIGKILL the child when the thread that forked it dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


class SharedEncoder:
    """Runs ffmpeg once (or loops a pre-encoded clip) and publishes :class:`AccessUnit` objects.

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
        self.codec = video_codec(self.settings.codec)
        self.ssrc = random.getrandbits(32)
        self.params: dict[int, bytes] = {}  # parameter sets of the current stream (SPS/PPS, VPS for H.265)
        self.audio: AudioTrack | None = AudioTrack(self.settings.audio) if self.settings.audio else None
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
        self._slewing = False
        self._latest_stamp = 0
        self._frame_ticks = RTP_CLOCK / self.settings.fps
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.first_keyframe = asyncio.Event()
        self.failure: str | None = None  # why a looped stream gave up

    @property
    def sps(self) -> bytes | None:
        return self.params.get(self.codec.param_types[-2])

    @property
    def pps(self) -> bytes | None:
        return self.params.get(self.codec.param_types[-1])

    @property
    def ready(self) -> bool:
        """Every parameter set the SDP needs is known."""
        return all(kind in self.params for kind in self.codec.param_types)

    @property
    def looped(self) -> bool:
        return isinstance(self.source, LoopedFileSource)

    # ------------------------------------------------------------------ lifecycle
    def command(self, source: VideoSource | None = None) -> list[str]:
        src = source or self.source
        s = self.settings
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-re"]
        cmd += src.input_args(s)
        vf = src.filter_graph(s)
        if vf:
            cmd += ["-vf", vf]
        cmd += ["-an", *s.video_args(realtime=True), "-f", self.codec.ffmpeg_format, "pipe:1"]
        return cmd

    def launch(self) -> None:
        """Start producing in the background (idempotent); :attr:`first_keyframe` is set once it serves."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"fakecam-encoder-{self.codec.name}")

    async def start(self, wait_s: float | None = None) -> None:
        try:
            await self.wait_serving(wait_s)
        except RuntimeError:
            await self.stop()
            raise

    async def wait_serving(self, wait_s: float | None = None) -> None:
        """Launch if needed and wait for the first keyframe; RuntimeError when it gives up (a looped clip that
        cannot be encoded, e.g. an ffmpeg without libx265) or nothing came within ``wait_s`` (default 10 s,
        5 min for a looped clip still to be encoded)."""
        self.launch()
        if wait_s is None:
            wait_s = START_WAIT_S
            if isinstance(self.source, LoopedFileSource) and not self.source.clip_path(self.settings).exists():
                wait_s = LOOP_START_WAIT_S
        if self.first_keyframe.is_set():
            return
        keyframe = asyncio.ensure_future(self.first_keyframe.wait())
        assert self._task is not None
        try:
            await asyncio.wait({keyframe, self._task}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            keyframe.cancel()
        if not self.first_keyframe.is_set():
            raise RuntimeError(f"fakecam {self.codec.name} stream did not start: {self.failure or 'no keyframe'}")

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
        if isinstance(source, LoopedFileSource):
            await self._run_loop(source)
            return
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
        parser = AnnexBParser(self.codec)
        self._last_ticks = None
        produced = False
        try:
            while True:
                chunk = await proc.stdout.read(256 * 1024)
                if not chunk:
                    break
                for nals in parser.feed(chunk):
                    if self._publish(nals, parser.params):
                        produced = True
        finally:
            await self._kill()
            stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stderr_task
        return produced

    async def _run_loop(self, source: LoopedFileSource) -> None:
        """Send the cached clip's access units forever, one per frame interval, with fresh capture times.

        The RTP payloads of each picture are cut once; a frame costs one RTP header per packet and the
        fan-out. Late wake-ups are caught up by the frame clock; after a stall of over 0.5 s it restarts.
        """
        try:
            path = await asyncio.to_thread(source.ensure_clip, self.settings)
            frames = await asyncio.to_thread(_read_clip, path, self.codec.name)
        except Exception as exc:
            logger.exception("fakecam: the looped clip is not usable")
            self.failure = str(exc)
            return
        if not frames or not frames[0][1]:
            logger.error("fakecam: the looped clip %s does not start with a keyframe", path.name)
            self.failure = f"the looped clip {path.name} does not start with a keyframe"
            return
        logger.info("fakecam: looping %s (%s frames, %.1f MB)", path.name, len(frames),
                    sum(sum(len(n) for n in nals) for nals, _, _ in frames) / 1e6)  # fmt: skip
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.fps
        params = {self.codec.nal_type(n): n for n in frames[0][0]}
        params = {k: n for k, n in params.items() if k in self.codec.param_types}
        self._last_ticks = None
        t0 = loop.time()
        sent = 0  # frames since t0
        position = 0  # the next frame of the clip
        while not self._stopping:
            due = t0 + sent * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > RESYNC_THRESHOLD_S:
                t0, sent = loop.time(), 0  # a long stall: restart the frame clock rather than burst
                self._last_ticks = None
            nals, _key, payloads = frames[position]
            self._publish(nals, params, payloads)
            sent += 1
            position = (position + 1) % len(frames)

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            logger.warning("fakecam ffmpeg: %s", line.decode(errors="replace").rstrip())

    # ------------------------------------------------------------------ access units
    def _stamp(self) -> int:
        """Capture time in 90 kHz ticks on a regular frame clock that never runs backwards.

        ``ffmpeg -re`` delivers the frames a stall held back in a burst, so the clock keeps its cadence through a
        stall (the burst catches it up with the wall clock). Far behind the wall clock (frames lost, an encoder
        that cannot keep up) it jumps forward, like a camera dropping frames; over a second ahead of it (the
        burst after such a jump) it runs at 3/4 speed until it is back within a frame. A backward jump (the old
        resync) gave recorded files non-monotonic timestamps.
        """
        frame = round(self._frame_ticks)
        arrival = now_ticks() - frame  # the AU completes one frame late
        last = self._last_ticks
        if last is None:  # a (re)started source: back on the wall clock, but never before an earlier picture
            stamp, self._slewing = max(arrival, self._latest_stamp + 1), False
        else:
            drift = arrival - (last + frame)
            if drift > RESYNC_FORWARD_S * RTP_CLOCK:
                logger.info("fakecam encoder clock jumps forward by %.3f s", drift / RTP_CLOCK)
                stamp, self._slewing = arrival, False
            elif drift < -AHEAD_SLEW_S * RTP_CLOCK or (self._slewing and drift < -frame):
                stamp, self._slewing = last + max(1, frame * 3 // 4), True  # ahead: slew back, never step back
            else:
                stamp, self._slewing = last + frame, False
        self._last_ticks = self._latest_stamp = stamp
        return stamp

    def _publish(self, nals: list[bytes], params: dict[int, bytes], payloads: list[bytes] | None = None) -> bool:
        """Stamp, packetize and fan out one picture; ``payloads``: its RTP payloads, cut already (a loop)."""
        codec = self.codec
        key = codec.is_keyframe(nals)
        if key:
            kinds = {codec.nal_type(n) for n in nals}
            prefix = [params[k] for k in codec.param_types if k not in kinds and k in params]
            if prefix:
                nals = prefix + nals
                payloads = None
            self.params = dict(params)
        elif not self.gop:
            return False  # nothing is decodable before the first keyframe
        ticks = self._stamp()
        au = AccessUnit(nals=nals, ticks=ticks, key=key)
        au.first_seq = self._seq
        if payloads is None:
            payloads = codec.rtp_payloads(nals, MAX_RTP_PAYLOAD)
        au.packets = rtp_packets(payloads, au.rtp_ts, self._seq, self.ssrc)
        self._seq = (self._seq + len(au.packets)) & 0xFFFF
        wall = au.wall
        if key and wall - self._last_sr_wall >= SR_INTERVAL_S:
            au.rtcp = rtcp_sender_report(self.ssrc, wall, au.rtp_ts, self._packets_sent, self._octets_sent)
            self._last_sr_wall = wall
        if self.audio is not None:
            # The samples up to this picture's capture time plus one frame (the picture is sent that late).
            au.audio, au.audio_rtcp = self.audio.until(wall + 1 / self.settings.fps)
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
        au.sent = time.time()
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


def _read_clip(path: Path, codec_name: str) -> list[tuple[list[bytes], bool, list[bytes]]]:
    """A looped clip's pictures: (NAL units, keyframe, RTP payloads), in decode order."""
    codec = video_codec(codec_name)
    parser = AnnexBParser(codec)
    data = path.read_bytes()
    aus = parser.feed(data) + parser.flush()
    return [(nals, codec.is_keyframe(nals), codec.rtp_payloads(nals, MAX_RTP_PAYLOAD)) for nals in aus]
