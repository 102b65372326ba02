"""Event-mode recording, the pure part: the trigger window and the pre-roll taken from segments on disk.

A camera with ``record_mode = 'event'`` records only while a window is open. Each trigger (a zone event,
an on-camera event, a manual call) extends it: ``window_end = max(current, ts + clamp(post_roll, 0..3600))``,
so a trigger can never shorten a window. Pre-roll (0-300 s) is never a ring buffer: it is the segments
already on disk that overlap ``[ts - pre_roll, ts]`` (continuous recording of a sub stream, or the tail
of the previous window), which the caller keeps (e.g. protects from retention) and links to the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_POST_ROLL_S = 3600
MAX_PRE_ROLL_S = 300


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass
class EventWindow:
    """The open recording window of one camera in event mode (times are UTC)."""

    end: datetime | None = None

    def trigger(self, ts: datetime, post_roll_s: float) -> datetime:
        """Extend the window to at least ``ts + post_roll``; return the (possibly unchanged) end."""
        candidate = ts + timedelta(seconds=clamp(post_roll_s, 0, MAX_POST_ROLL_S))
        if self.end is None or candidate > self.end:
            self.end = candidate
        return self.end

    def is_open(self, now: datetime) -> bool:
        return self.end is not None and now <= self.end

    def recheck_in(self, now: datetime, tick_s: float) -> float:
        """Seconds until the recorder should look again: ``min(tick, remaining + 1)``, at least 1 s, so the
        post-roll ends on time without busy polling."""
        if self.end is None:
            return max(1.0, tick_s)
        remaining = (self.end - now).total_seconds()
        return max(1.0, min(tick_s, remaining + 1.0))


def pre_roll_segments(
    segments: Iterable[Mapping[str, Any]], trigger_ts: datetime, pre_roll_s: float
) -> list[Mapping[str, Any]]:
    """The segments (rows with ``start_time``/``end_time``) overlapping ``[ts - pre_roll, ts]``, oldest first."""
    pre = clamp(pre_roll_s, 0, MAX_PRE_ROLL_S)
    if pre <= 0:
        return []
    since = trigger_ts - timedelta(seconds=pre)
    chosen = [s for s in segments if s["end_time"] >= since and s["start_time"] <= trigger_ts]
    return sorted(chosen, key=lambda s: s["start_time"])


TriggerFn = Callable[[str, datetime, str], Awaitable[None]]


def zone_trigger_hook(
    trigger: TriggerFn, event_types: Sequence[str] = ("enter", "dwell", "cross_ab", "cross_ba")
) -> Callable[[Sequence[Any]], Awaitable[None]]:
    """A ``ZoneEngine`` hook calling ``trigger(camera_id, frame_ts, reason)`` for each new zone event of the
    given types (exits do not start recording by default). The callee decides whether the camera is in event
    mode and applies its own post-roll."""

    async def hook(events: Sequence[Any]) -> None:
        for ev in events:
            if ev.event_type in event_types:
                await trigger(ev.camera_id, ev.timestamp, f"zone_{ev.event_type}:{ev.zone_id}")

    return hook
