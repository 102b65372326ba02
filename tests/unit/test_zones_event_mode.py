"""Event-mode recording maths: windows only grow, recheck cadence, pre-roll from segments on disk, the hook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from heldar.recording.event_mode import EventWindow, pre_roll_segments, zone_trigger_hook
from heldar.zones.model import ZoneEvent

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def test_trigger_extends_never_shortens_and_clamps_post_roll() -> None:
    w = EventWindow()
    assert not w.is_open(T0)
    assert w.trigger(T0, 30) == T0 + timedelta(seconds=30)
    assert w.trigger(T0 + timedelta(seconds=5), 10) == T0 + timedelta(seconds=30)  # shorter: unchanged
    assert w.trigger(T0 + timedelta(seconds=20), 30) == T0 + timedelta(seconds=50)
    assert w.is_open(T0 + timedelta(seconds=50)) and not w.is_open(T0 + timedelta(seconds=51))
    assert EventWindow().trigger(T0, 99999) == T0 + timedelta(seconds=3600)
    assert EventWindow().trigger(T0, -5) == T0


def test_recheck_cadence() -> None:
    w = EventWindow()
    assert w.recheck_in(T0, 30) == 30
    w.trigger(T0, 10)
    assert w.recheck_in(T0, 30) == 11  # remaining + 1
    assert w.recheck_in(T0 + timedelta(seconds=10), 30) == 1
    assert w.recheck_in(T0 + timedelta(seconds=40), 30) == 1  # never below 1 s


def test_pre_roll_uses_segments_already_on_disk() -> None:
    segs = [{"id": f"s{i}", "start_time": T0 + timedelta(seconds=10 * i),
             "end_time": T0 + timedelta(seconds=10 * i + 10)} for i in range(6)]  # fmt: skip
    ts = T0 + timedelta(seconds=45)
    assert [s["id"] for s in pre_roll_segments(reversed(segs), ts, 12)] == ["s3", "s4"]
    assert [s["id"] for s in pre_roll_segments(segs, ts, 1000)] == ["s0", "s1", "s2", "s3", "s4"]  # clamp 300
    assert pre_roll_segments(segs, ts, 0) == []
    assert pre_roll_segments(segs, T0 + timedelta(hours=1), 10) == []  # nothing on disk near it


async def test_zone_hook_triggers_on_enter_and_crossings_only() -> None:
    calls: list[tuple[str, datetime, str]] = []

    async def trigger(camera_id: str, ts: datetime, reason: str) -> None:
        calls.append((camera_id, ts, reason))

    hook = zone_trigger_hook(trigger)
    events: list[Any] = [ZoneEvent("cam", "zone_1", "door", "t", kind, T0) for kind in ("enter", "exit", "cross_ab")]
    await hook(events)
    assert [c[2] for c in calls] == ["zone_enter:zone_1", "zone_cross_ab:zone_1"] and calls[0][1] == T0
