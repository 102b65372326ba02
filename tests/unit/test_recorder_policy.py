from __future__ import annotations

import pytest

from heldar.recorder_policy import (
    ProgressWatchdog,
    ReconnectBackoff,
    RestartLimiter,
    default_stall_ceiling_s,
)


def no_jitter() -> float:
    return 0.5


# ---------------------------------------------------------------- ReconnectBackoff


def test_backoff_grows_while_failing_and_caps() -> None:
    b = ReconnectBackoff(rng=no_jitter)
    delays = [b.next_delay(ran_s=0.2, produced_output=False) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert b.failures == 8


def test_backoff_fast_after_healthy_run_then_grows() -> None:
    b = ReconnectBackoff(rng=no_jitter)
    for _ in range(4):
        b.next_delay(1.0, False)
    assert b.next_delay(ran_s=3600, produced_output=True) == 0.5
    assert b.failures == 0
    assert [b.next_delay(1.0, False) for _ in range(3)] == [1, 2, 4]


def test_backoff_health_by_runtime_or_output() -> None:
    b = ReconnectBackoff(rng=no_jitter)
    b.next_delay(0, False)
    assert b.next_delay(ran_s=10.0, produced_output=False) == 0.5  # ran long enough
    b.next_delay(0, False)
    assert b.next_delay(ran_s=3.0, produced_output=True) == 0.5  # wrote a segment
    assert b.next_delay(ran_s=9.9, produced_output=False) == 1.0


def test_backoff_reset_and_jitter_bounds() -> None:
    b = ReconnectBackoff(rng=no_jitter)
    for _ in range(5):
        b.next_delay(0, False)
    b.reset()
    assert b.failures == 0
    assert b.next_delay(0, False) == 1.0

    lo = ReconnectBackoff(jitter=0.1, rng=lambda: 0.0)
    hi = ReconnectBackoff(jitter=0.1, rng=lambda: 0.999999)
    assert lo.next_delay(0, False) == pytest.approx(0.9)
    assert hi.next_delay(0, False) == pytest.approx(1.1, rel=1e-5)
    for _ in range(10):
        hi.next_delay(0, False)
    assert hi.next_delay(0, False) <= 30.0  # jitter never exceeds the cap
    with pytest.raises(ValueError):
        ReconnectBackoff(jitter=1.5)


# ---------------------------------------------------------------- ProgressWatchdog


def feed(w: ProgressWatchdog, start: float, end: float, step: float, grow_every: float, size: int = 0) -> int:
    """Sample every `step` s; bytes grow every `grow_every` s (0 = never). Returns final size."""
    now = start
    next_growth = start + grow_every if grow_every else float("inf")
    while now <= end + 1e-9:
        if now >= next_growth - 1e-9:
            size += 1000
            next_growth += grow_every
        w.observe(now, size)
        assert not w.stalled(now), now
        now = round(now + step, 6)
    return size


def first_stall(w: ProgressWatchdog, start: float, size: int, step: float = 0.5) -> float:
    now = start
    while not w.stalled(now):
        w.observe(now, size)
        now = round(now + step, 6)
        assert now < start + 1000
    return now


def test_default_ceiling_shape() -> None:
    assert default_stall_ceiling_s(2) == 8.0
    assert default_stall_ceiling_s(60) == 64.0
    assert default_stall_ceiling_s(5, grace_s=2) == 7.0


def test_watchdog_two_second_segments_detects_stall_within_8s() -> None:
    w = ProgressWatchdog(started_at=0.0, segment_seconds=2)
    w.observe(0.0, 0)
    w.observe(3.0, 5000)  # first fragment after connect + analysis
    assert w.produced_output and w.first_output_at == 3.0
    size = feed(w, 3.0, 60.0, step=1.0, grow_every=2.0, size=5000)
    stalled_at = first_stall(w, 61.0, size)
    last = w.last_progress_at
    assert last is not None
    assert 6.0 <= stalled_at - last <= 8.0
    reason = w.stall_reason(stalled_at)
    assert reason is not None and "no new video bytes" in reason


def test_watchdog_learns_cadence_for_long_segments() -> None:
    w = ProgressWatchdog(started_at=0.0, segment_seconds=60)
    w.observe(2.0, 100)
    assert w.threshold_s() == 64.0  # cadence unknown yet: the ceiling
    size = feed(w, 2.0, 30.0, step=1.0, grow_every=2.0, size=100)
    assert w.threshold_s() == pytest.approx(7.0)
    stalled_at = first_stall(w, 31.0, size)
    assert stalled_at - (w.last_progress_at or 0) <= 8.0


def test_watchdog_long_gop_camera_not_killed() -> None:
    w = ProgressWatchdog(started_at=0.0, segment_seconds=60)
    w.observe(5.0, 100)
    feed(w, 5.0, 200.0, step=1.0, grow_every=12.0, size=100)  # a 12 s GOP, healthy
    assert w.threshold_s() == pytest.approx(22.0)


def test_watchdog_startup_timeout() -> None:
    w = ProgressWatchdog(started_at=100.0, segment_seconds=2, startup_timeout_s=20)
    w.observe(101.0, 0)
    assert not w.stalled(120.0)
    assert w.stalled(120.5)
    reason = w.stall_reason(120.5)
    assert reason is not None and "after start" in reason
    assert not w.produced_output


def test_watchdog_any_change_is_progress_and_fixed_threshold() -> None:
    w = ProgressWatchdog(started_at=0.0, segment_seconds=2, stall_after_s=5.0)
    w.observe(1.0, 1000)
    w.observe(5.0, 1000)
    w.observe(5.5, 400)  # retention deleted an old file of the run: still a change
    assert w.last_progress_at == 5.5
    assert not w.stalled(10.5)
    assert w.stalled(10.6)
    for i in range(10):
        w.observe(11.0 + i, 2000 + i)
    assert w.threshold_s() == 5.0  # explicit threshold is never learned away


# ---------------------------------------------------------------- RestartLimiter


def test_restart_limiter_backoff_and_crash_loop() -> None:
    r = RestartLimiter()
    delays = [r.record_failure(float(i), f"boom {i}") for i in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert r.restarts_total == 8 and r.last_cause == "boom 7"
    assert r.crash_loop(8.0)
    assert r.failures_in_window(8.0) == 8
    assert not r.crash_loop(200.0)  # window slid past all of them


def test_restart_limiter_crash_loop_threshold_and_window() -> None:
    r = RestartLimiter(loop_failures=5, loop_window_s=120)
    for now in (0, 30, 60, 90):
        r.record_failure(float(now), "x")
    assert not r.crash_loop(90.0)
    r.record_failure(119.0, "x")
    assert r.crash_loop(119.0)
    assert not r.crash_loop(121.0)  # the failure at t=0 fell out of the window


def test_restart_limiter_reset_after_healthy() -> None:
    r = RestartLimiter()
    for i in range(6):
        r.record_failure(float(i), "x")
    r.reset_after_healthy(300.0)
    assert r.consecutive_failures == 0 and not r.crash_loop(300.0)
    assert r.restarts_total == 6 and r.last_cause == "x"
    assert r.record_failure(301.0, "y") == 1.0


def test_backoff_stays_fast_while_recently_healthy() -> None:
    from heldar.recorder_policy import ReconnectBackoff

    b = ReconnectBackoff(rng=lambda: 0.5, recent_window_s=60)
    delays = [b.next_delay(0.1, False, since_healthy_s=t) for t in (1, 3, 6, 12, 30)]
    assert delays == [0.5] * 5 and b.failures == 5
    assert b.next_delay(0.1, False, since_healthy_s=61) == 1.0  # past the window: back off from 1 s
    assert b.next_delay(0.1, False, since_healthy_s=None) > 0.5
