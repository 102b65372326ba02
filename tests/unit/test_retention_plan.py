"""Retention planning (pure): quota, fair-share cap, free-disk floor rounds, orphans, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from heldar.storage import retention as r
from heldar.storage.retention import CameraUsage, Candidate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MB = 1024 * 1024


def cands(camera: str, n: int, size: int = MB, start: datetime = T0, step_s: int = 2) -> list[Candidate]:
    return [Candidate(f"{camera}-{i:05d}", camera, start + timedelta(seconds=i * step_s), size) for i in range(n)]


def test_limits_overrides_shadow_environment() -> None:
    env = r.resolve_limits(20, 5, None, None)
    assert env.max_recordings_bytes == 20 * r.GB and env.min_free_disk_bytes == 5 * r.GB
    assert not env.max_overridden and not env.min_free_overridden
    over = r.resolve_limits(20, 5, 0.5, 0)
    assert over.max_recordings_bytes == r.GB // 2 and over.min_free_disk_bytes == 0
    assert over.max_overridden and over.min_free_overridden
    assert r.sweep_interval_s(1) == 30 and r.sweep_interval_s(300) == 300


def test_quota_deletes_oldest_until_camera_fits() -> None:
    usage = CameraUsage("a", total_bytes=10 * MB, locked_bytes=0, quota_bytes=7 * MB)
    plan = r.plan_quota(usage, cands("a", 10))
    assert [c.segment_id for c in plan.deletions] == ["a-00000", "a-00001", "a-00002"]


def test_quota_budget_is_quota_minus_locked_and_locked_only_warns() -> None:
    # 4 MB locked, quota 7 MB → budget 3 MB for 6 MB deletable: 3 go.
    usage = CameraUsage("a", total_bytes=10 * MB, locked_bytes=4 * MB, quota_bytes=7 * MB)
    assert len(r.plan_quota(usage, cands("a", 6)).deletions) == 3
    locked = CameraUsage("a", total_bytes=10 * MB, locked_bytes=8 * MB, quota_bytes=7 * MB)
    plan = r.plan_quota(locked, cands("a", 2))
    assert plan.deletions == [] and plan.notes == ["quota_locked"]
    assert r.plan_quota(CameraUsage("a", 10 * MB), cands("a", 10)).deletions == []  # no quota, no step


def test_fair_share_weights_by_quota_and_the_most_over_camera_loses_first() -> None:
    # cap 30 MB; a has quota 20 (weight 20 MB), b quota 10 → shares 20 and 10 MB.
    a = CameraUsage("a", 30 * MB, quota_bytes=20 * MB)
    b = CameraUsage("b", 20 * MB, quota_bytes=10 * MB)
    shares = r.fair_shares([a, b], 30 * MB)
    assert shares == {"a": 20 * MB, "b": 10 * MB}
    plan = r.plan_cap([a, b], {"a": cands("a", 30), "b": cands("b", 20)}, 30 * MB, batch=1)
    by_camera = {"a": 0, "b": 0}
    for c in plan.deletions:
        by_camera[c.camera_id] += 1
    # 50 MB → 30 MB: each ends at its share.
    assert by_camera == {"a": 10, "b": 10}
    for cam in ("a", "b"):
        ids = [c.segment_id for c in plan.deletions if c.camera_id == cam]
        assert ids == sorted(ids)  # oldest first within a camera


def test_cap_without_quotas_is_equal_share() -> None:
    a, b = CameraUsage("a", 40 * MB), CameraUsage("b", 10 * MB)
    plan = r.plan_cap([a, b], {"a": cands("a", 40), "b": cands("b", 10)}, 30 * MB)
    assert {c.camera_id for c in plan.deletions} == {"a"}
    assert plan.bytes >= 20 * MB


def test_locks_exceeding_the_cap_stop_the_step() -> None:
    a = CameraUsage("a", 40 * MB, locked_bytes=35 * MB)
    plan = r.plan_cap([a], {"a": cands("a", 5)}, 30 * MB)
    assert plan.deletions == [] and plan.notes == ["locked_exceeds_cap"]


def test_over_share_camera_with_only_locked_footage_is_left_out_and_others_still_pay() -> None:
    # a: 30 MB, all locked, share 15; b: 20 MB, share 15. cap 30 → b must lose ≥ 20 - ... to fit budget 0?
    a = CameraUsage("a", 30 * MB, locked_bytes=20 * MB)
    b = CameraUsage("b", 20 * MB)
    plan = r.plan_cap([a, b], {"a": cands("a", 10), "b": cands("b", 20)}, 40 * MB)
    # budget = 40 - 20 = 20 MB of deletable; deletable = 10 + 20 = 30 → 10 MB go, a's unlocked first.
    assert plan.bytes >= 10 * MB
    assert plan.deletions[0].camera_id == "a"
    protected = CameraUsage("a", 30 * MB, locked_bytes=30 * MB)
    plan = r.plan_cap([protected, b], {"a": [], "b": cands("b", 20)}, 45 * MB)
    assert "over_share_all_protected" in plan.notes
    assert {c.camera_id for c in plan.deletions} == {"b"} and plan.bytes >= 5 * MB


def test_floor_round_size_is_clamped() -> None:
    assert r.floor_round_size(1, MB) == 20
    assert r.floor_round_size(100 * MB, MB) == 100
    assert r.floor_round_size(10_000 * MB, MB) == 256
    assert r.floor_round_size(5, 0) == 20


def test_floor_skip_reasons() -> None:
    assert r.floor_skip_reason(0, 100) == "disabled"
    assert r.floor_skip_reason(10, None) == "statvfs_unavailable"
    assert r.floor_skip_reason(100, 100) == "floor_unsatisfiable"
    assert r.floor_skip_reason(10, 100) is None


def test_floor_round_picks_by_fair_share() -> None:
    a, b = CameraUsage("a", 30 * MB), CameraUsage("b", 10 * MB)
    plan = r.plan_floor_round([a, b], {"a": cands("a", 30), "b": cands("b", 10)}, 30 * MB, 0, 25 * MB)
    assert len(plan.deletions) == 25
    # a is 15 MB over its 15 MB share: it loses 15 first, then the rest goes oldest first across both.
    assert [c.camera_id for c in plan.deletions[:15]] == ["a"] * 15
    # Nobody over share (cap 100 MB): oldest first across cameras.
    even = r.plan_floor_round([a, b], {"a": cands("a", 30, step_s=4), "b": cands("b", 10, step_s=1)}, 100 * MB, 0, MB)
    assert len(even.deletions) == 20
    starts = [c.start for c in even.deletions]
    assert starts == sorted(starts) and {c.camera_id for c in even.deletions} == {"a", "b"}
    assert r.plan_floor_round([a], {"a": cands("a", 3)}, 100 * MB, 30 * MB, 25 * MB).deletions == []
    assert r.recovering(10, 11) and not r.recovering(10, 10)


def test_orphans_and_missing() -> None:
    files = [r.DiskFile("old.mp4", 1, 1000.0), r.DiskFile("new.mp4", 1, 4500.0), r.DiskFile("kept.mp4", 1, 0.0)]
    assert r.orphans(files, {"kept.mp4"}, now=5000.0, min_age_s=3600) == ["old.mp4"]
    assert r.missing(["a.mp4", "b.mp4"], {"b.mp4"}) == ["a.mp4"]
    assert r.days_remaining(100, 50) == 2.0 and r.days_remaining(None, 1) is None and r.days_remaining(1, 0) is None
