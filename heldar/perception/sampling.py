"""Sampling primitives: pick frames at a granted fps, bound the work in flight, decode RTSP with PyAV.

* :class:`Cadence` keeps a decoded frame when its time has come (a fixed grid at ``1/fps``, re-anchored
  after a stall so it never bursts to catch up).
* :class:`StreamClock` gives each decoded frame the wall time it was captured at, from the stream's own
  timestamps. The cadence runs on that time, not on when the decoder got round to the frame: a decoder
  starved of CPU delivers frames in bursts, and a wall-clock grid would keep one frame per burst.
* :class:`FrameWindow` holds at most ``max_in_flight`` frames at workers and ``max_pending`` waiting;
  when workers fall behind the **oldest** pending frame is dropped and counted, so memory stays flat.
* :class:`FrameReader` decodes a stream in a thread (PyAV, RTSP over TCP with a socket timeout),
  scales kept frames to the granted width and hands them to a callback; it reconnects with backoff.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from heldar.camera_urls import mask_text

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Cadence:
    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else float("inf")
        self.next_due: float | None = None

    def due(self, t: float) -> bool:
        # first frame, after a stall, or time went backwards (a re-anchored clock): start a new grid
        if self.next_due is None or t - self.next_due > self.period or t < self.next_due - 2 * self.period:
            self.next_due = t + self.period
            return True
        if t + 1e-3 >= self.next_due:
            self.next_due += self.period
            return True
        return False


class StreamClock:
    """Map a frame's stream time (seconds, from its pts) to the wall time it was captured at.

    The anchor follows the least delayed frame seen (a frame is never captured after it arrived), and moves
    forward when a frame would be more than ``max_skew_s`` late (a timestamp jump, camera clock drift, or a
    decoder that fell that far behind). A frame without a timestamp is taken as captured now.
    """

    def __init__(self, max_skew_s: float = 2.0) -> None:
        self.max_skew_s = max_skew_s
        self.offset: float | None = None

    def captured_at(self, stream_t: float | None, now: float) -> float:
        if stream_t is None:
            return now
        if self.offset is None or stream_t + self.offset > now or stream_t + self.offset < now - self.max_skew_s:
            self.offset = now - stream_t
        return stream_t + self.offset


class FrameWindow(Generic[T]):
    """Bounded in-flight work with drop-oldest pending frames (single-threaded: call from one loop)."""

    def __init__(self, max_in_flight: int, max_pending: int) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self.pending: collections.deque[T] = collections.deque()
        self.max_pending = max(0, max_pending)
        self.in_flight = 0
        self.dropped = 0

    def offer(self, item: T) -> list[T]:
        """Queue a frame; returns frames to submit now (at most one)."""
        self.pending.append(item)
        while len(self.pending) > self.max_pending and self.in_flight >= self.max_in_flight:
            self.pending.popleft()
            self.dropped += 1
        return self._take()

    def done(self) -> list[T]:
        """A frame came back from a worker; returns frames to submit now."""
        self.in_flight = max(0, self.in_flight - 1)
        return self._take()

    def _take(self) -> list[T]:
        out = []
        while self.pending and self.in_flight < self.max_in_flight:
            out.append(self.pending.popleft())
            self.in_flight += 1
        return out


@dataclass(frozen=True)
class SampledFrame:
    image: Any  # BGR numpy array at the granted width
    captured_at: datetime
    seq: int


class FrameReader:
    """Decode ``url`` in a daemon thread; ``on_frame(SampledFrame)`` for each kept frame."""

    def __init__(self, url: str, fps: float, width: int, on_frame: Callable[[SampledFrame], None], *,
                 timeout_s: float = 5.0, transport: str = "tcp") -> None:  # fmt: skip
        self.url = url
        self.fps = fps
        self.width = width
        self.on_frame = on_frame
        self.timeout_s = timeout_s
        self.transport = transport
        self.state = "connecting"
        self.last_error: str | None = None
        self.decoded = 0
        self.sampled = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._container: Any = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # the decode loop sees it at the next frame, or the socket timeout ends a stall;
        # closing the container from this thread while it decodes would crash libav
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 2)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._read_once()
                self.last_error = None if self._stop.is_set() else "stream ended"
            except Exception as exc:
                # PyAV puts the URL (credentials included) in its messages: mask before keeping it
                self.last_error = mask_text(f"{exc.__class__.__name__}: {exc}")[:300]
            if self._stop.is_set():
                break
            self.state = "offline"
            self.reconnects += 1
            if time.monotonic() - started > 30:
                backoff = 1.0
            logger.info("sampler stream %s; reconnect in %.0fs", self.last_error, backoff)
            self._stop.wait(backoff)
            backoff = min(30.0, backoff * 2)
        self.state = "stopped"

    def _read_once(self) -> None:
        import av

        self.state = "connecting"
        options = {"rtsp_transport": self.transport, "timeout": str(int(self.timeout_s * 1_000_000))}
        if not self.url.startswith("rtsp"):
            options = {}
        container = av.open(self.url, options=options, timeout=(self.timeout_s, self.timeout_s))
        self._container = container
        try:
            stream = container.streams.video[0]
            cadence, clock = Cadence(self.fps), StreamClock()
            for frame in container.decode(stream):
                if self._stop.is_set():
                    return
                self.decoded += 1
                now = clock.captured_at(frame.time, time.time())
                if not cadence.due(now):
                    continue
                self.state = "sampling"
                height = max(2, round(frame.height * self.width / frame.width / 2) * 2)
                image = frame.to_ndarray(width=self.width, height=height, format="bgr24")
                self.sampled += 1
                self.on_frame(SampledFrame(image, datetime.fromtimestamp(now, UTC), self.sampled))
        finally:
            self._container = None
            container.close()
