"""Recorder timing policy: reconnect backoff, output-progress stall watchdog, supervisor restarts.

All three are plain state machines fed with ``now`` (``time.monotonic()`` seconds in production),
so tests drive them with made-up clocks.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)


class ReconnectBackoff:
    """Delay before restarting ffmpeg after a run ended.

    * After a healthy run (ran ≥ ``healthy_after_s`` or wrote at least one segment) the next try
      is fast (``fast_s``, 0.5 s): a camera that was fine a moment ago usually is again.
    * While the camera was healthy less than ``recent_window_s`` ago (pass ``since_healthy_s``), every
      retry stays fast: a short outage is bridged within about ``fast_s`` of the camera coming back.
    * Each consecutive unhealthy run doubles the delay: 1, 2, 4, 8, 16, 30, 30 … s (``max_s``).
    * ``jitter`` spreads the delay by ±``jitter``·delay (default ±10 %), so 200 cameras behind one
      switch do not reconnect in lock-step; pass ``rng=lambda: 0.5`` for exact values.
    """

    def __init__(
        self,
        *,
        fast_s: float = 0.5,
        initial_s: float = 1.0,
        factor: float = 2.0,
        max_s: float = 30.0,
        healthy_after_s: float = 10.0,
        recent_window_s: float = 60.0,
        jitter: float = 0.1,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.fast_s = fast_s
        self.initial_s = initial_s
        self.factor = factor
        self.max_s = max_s
        self.healthy_after_s = healthy_after_s
        self.recent_window_s = recent_window_s
        self.jitter = jitter
        self._rng = rng
        self._failures = 0
        self._slow_failures = 0

    @property
    def failures(self) -> int:
        """Consecutive unhealthy runs since the last healthy one (or :meth:`reset`)."""
        return self._failures

    def is_healthy_run(self, ran_s: float, produced_output: bool) -> bool:
        return produced_output or ran_s >= self.healthy_after_s

    def next_delay(self, ran_s: float, produced_output: bool, since_healthy_s: float | None = None) -> float:
        """Seconds to wait before the next run, given how the run that just ended went.

        ``since_healthy_s``: seconds since the camera last delivered video (None: never / unknown).
        """
        if self.is_healthy_run(ran_s, produced_output):
            self._failures = self._slow_failures = 0
            base = self.fast_s
        elif since_healthy_s is not None and since_healthy_s < self.recent_window_s:
            self._failures += 1
            base = self.fast_s
        else:
            self._failures += 1
            self._slow_failures += 1
            base = min(self.max_s, self.initial_s * self.factor ** (self._slow_failures - 1))
        delay = base * (1 + self.jitter * (2 * self._rng() - 1))
        return max(0.0, min(delay, self.max_s))

    def reset(self) -> None:
        self._failures = self._slow_failures = 0


def default_stall_ceiling_s(segment_seconds: float, grace_s: float = 4.0) -> float:
    """Longest silence tolerated before the write cadence is known: ``max(segment_seconds, 4) + grace``."""
    return max(float(segment_seconds), 4.0) + grace_s


class ProgressWatchdog:
    """Detects a recorder that runs but writes nothing, from the bytes of its segment files.

    Feed :meth:`observe` every second or so with the total size of the current run's files. With
    ``frag_keyframe`` ffmpeg appends a fragment at every keyframe and closes a segment every
    ``segment_seconds``, so the bytes change at least every ``min(GOP, segment_seconds)`` while
    the camera delivers video. Any change counts as progress (a shrink too: retention may delete
    an old file of the run).

    * **Startup:** no output within ``startup_timeout_s`` (default 20 s: connect + ffmpeg's stream
      analysis, up to ~5 s + two GOPs until the first fragment is flushed) → stalled.
    * **Running:** silence longer than the threshold → stalled. The threshold starts at the
      ceiling ``max(segment_seconds, 4) + grace_s`` (8 s for 2 s segments) and, once
      ``learn_after`` (3) progress intervals have been seen, tightens to
      ``max(floor_s, 1.5 · longest interval seen + grace_s)`` but never above the ceiling. For a
      camera with a 2 s GOP that is 7 s, whatever the segment length; a 12 s GOP on 60 s segments
      gives 22 s instead of killing a healthy camera.

    Defaults: ``grace_s`` 4 s (sampling granularity, flush jitter, slow disks), ``floor_s`` 6 s.
    The ceiling assumes a keyframe interval below it (true for typical 1-4 s GOPs); for a camera
    with a longer GOP ("smart codec"), pass ``stall_after_s`` explicitly (e.g. 2·GOP + grace).
    """

    def __init__(
        self,
        *,
        started_at: float,
        segment_seconds: float,
        startup_timeout_s: float = 20.0,
        grace_s: float = 4.0,
        floor_s: float = 6.0,
        learn_after: int = 3,
        stall_after_s: float | None = None,
    ) -> None:
        self.started_at = started_at
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.floor_s = floor_s
        self.learn_after = learn_after
        self.ceiling_s = (
            stall_after_s if stall_after_s is not None else default_stall_ceiling_s(segment_seconds, grace_s)
        )
        self._fixed = stall_after_s is not None
        self._last_bytes: int | None = None
        self._first_output_at: float | None = None
        self._last_progress_at: float | None = None
        self._intervals = 0
        self._longest_interval = 0.0

    @property
    def first_output_at(self) -> float | None:
        return self._first_output_at

    @property
    def last_progress_at(self) -> float | None:
        return self._last_progress_at

    @property
    def produced_output(self) -> bool:
        return self._first_output_at is not None

    def observe(self, now: float, total_bytes: int) -> None:
        """Record one sample of the run's total segment bytes."""
        previous = self._last_bytes
        self._last_bytes = total_bytes
        if total_bytes == previous:
            return
        if self._first_output_at is None:
            if total_bytes <= 0:
                return
            self._first_output_at = now
        elif self._last_progress_at is not None:
            self._intervals += 1
            self._longest_interval = max(self._longest_interval, now - self._last_progress_at)
        self._last_progress_at = now

    def threshold_s(self) -> float:
        """Silence (s) tolerated after the first output, right now."""
        if self._fixed or self._intervals < self.learn_after:
            return self.ceiling_s
        learned = max(self.floor_s, 1.5 * self._longest_interval + self.grace_s)
        return min(self.ceiling_s, learned)

    def stall_reason(self, now: float) -> str | None:
        """Why the run counts as stalled at ``now``, or ``None`` while it is making progress."""
        if self._last_progress_at is None:
            waited = now - self.started_at
            if waited > self.startup_timeout_s:
                return f"no video written {waited:.1f} s after start (limit {self.startup_timeout_s:.0f} s)"
            return None
        silent = now - self._last_progress_at
        limit = self.threshold_s()
        if silent > limit:
            return f"no new video bytes for {silent:.1f} s (limit {limit:.1f} s)"
        return None

    def stalled(self, now: float) -> bool:
        return self.stall_reason(now) is not None


class RestartLimiter:
    """Supervisor restart policy for a failing actor or recorder.

    :meth:`record_failure` returns the delay before the next restart: 1, 2, 4 … 60 s (``max_s``)
    over consecutive failures. :meth:`crash_loop` is true while ≥ ``loop_failures`` (5) failures
    fall within ``loop_window_s`` (120 s). :meth:`reset_after_healthy` forgets the streak (but
    not :attr:`restarts_total` or :attr:`last_cause`).
    """

    def __init__(
        self,
        *,
        initial_s: float = 1.0,
        factor: float = 2.0,
        max_s: float = 60.0,
        loop_failures: int = 5,
        loop_window_s: float = 120.0,
    ) -> None:
        self.initial_s = initial_s
        self.factor = factor
        self.max_s = max_s
        self.loop_failures = loop_failures
        self.loop_window_s = loop_window_s
        self._streak = 0
        self._recent: deque[float] = deque()
        self.restarts_total = 0
        self.last_cause: str | None = None
        self.last_failure_at: float | None = None

    @property
    def consecutive_failures(self) -> int:
        return self._streak

    def _prune(self, now: float) -> None:
        while self._recent and now - self._recent[0] > self.loop_window_s:
            self._recent.popleft()

    def record_failure(self, now: float, cause: str) -> float:
        """Count a failure with its cause; returns seconds to wait before restarting."""
        self._streak += 1
        self.restarts_total += 1
        self.last_cause = cause
        self.last_failure_at = now
        self._recent.append(now)
        self._prune(now)
        delay = min(self.max_s, self.initial_s * self.factor ** (self._streak - 1))
        logger.debug("restart #%s in %.1f s after failure: %s", self.restarts_total, delay, cause)
        return delay

    def failures_in_window(self, now: float) -> int:
        self._prune(now)
        return len(self._recent)

    def crash_loop(self, now: float) -> bool:
        return self.failures_in_window(now) >= self.loop_failures

    def reset_after_healthy(self, now: float) -> None:
        """The restarted thing has been healthy (as of ``now``): start the backoff afresh."""
        self._streak = 0
        self._recent.clear()
        logger.debug("restart backoff reset at %.1f", now)
