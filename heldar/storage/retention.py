"""Retention planning: which segments to delete, and why. Pure functions, no I/O.

The sweeper (``actors/retention.py``, SQL in ``heldar/store/retention.py``) reads usage and candidates,
asks these functions what to delete, deletes conditionally and measures again. The steps and their
order follow upstream (``storage.rs``/``retention.rs``):

1. **age**: segments ending before ``now - retention_hours`` of their camera;
2. **quota**: per camera, budget = quota - evidence-locked bytes; oldest first until the camera fits
   (a budget <= 0 only warns: locked footage is never deleted);
3. **cap**: budget = cap - evidence-locked bytes of all cameras (<= 0: ``locked_exceeds_cap``, stop);
   while the deletable bytes exceed it, the camera furthest over its fair share (``cap * weight / sum``,
   weight = its quota or 1) loses its oldest ``batch``; if that camera's excess is all locked,
   ``over_share_all_protected`` and stop; if nobody is over share, oldest first across cameras;
4. **floor**: while free space is below the floor, rounds of ``clamp(deficit / avg_segment, 20, 256)``
   victims chosen the cap's way, at most 200 rounds, stopping when free space does not grow.

Evidence-locked segments never appear among candidates, so no plan can name one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

GB = 1024**3
BATCH = 20
FLOOR_MIN_ROUND = 20
FLOOR_MAX_ROUND = 256
FLOOR_MAX_ROUNDS = 200
ORPHAN_MIN_AGE_S = 3600.0

REASONS = ("age", "quota", "cap", "floor", "orphan", "missing")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deletable (not evidence-locked) segment."""

    segment_id: str
    camera_id: str
    start: datetime
    size_bytes: int


@dataclass(frozen=True, slots=True)
class CameraUsage:
    """One camera's footprint: every indexed byte, the evidence-locked part, its quota (None: none)."""

    camera_id: str
    total_bytes: int
    locked_bytes: int = 0
    quota_bytes: int | None = None

    @property
    def deletable_bytes(self) -> int:
        return max(0, self.total_bytes - self.locked_bytes)

    @property
    def weight(self) -> int:
        return self.quota_bytes if self.quota_bytes and self.quota_bytes > 0 else 1


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps in force for one sweep (environment defaults shadowed by runtime overrides)."""

    max_recordings_bytes: int
    min_free_disk_bytes: int  # 0 disables the floor
    max_overridden: bool = False
    min_free_overridden: bool = False

    @property
    def max_recordings_gb(self) -> float:
        return self.max_recordings_bytes / GB

    @property
    def min_free_disk_gb(self) -> float:
        return self.min_free_disk_bytes / GB


def resolve_limits(
    env_max_gb: float, env_min_free_gb: float, override_max_gb: float | None, override_min_free_gb: float | None
) -> Limits:
    """Overrides (from the database) shadow the environment; ``None`` means "not overridden"."""
    max_gb = override_max_gb if override_max_gb is not None else env_max_gb
    floor_gb = override_min_free_gb if override_min_free_gb is not None else env_min_free_gb
    return Limits(
        max_recordings_bytes=int(max_gb * GB),
        min_free_disk_bytes=int(floor_gb * GB),
        max_overridden=override_max_gb is not None,
        min_free_overridden=override_min_free_gb is not None,
    )


def sweep_interval_s(configured_s: float) -> float:
    """Sweeps run every ``max(HELDAR_RETENTION_INTERVAL_S, 30)`` seconds."""
    return max(float(configured_s), 30.0)


def age_cutoff(now: datetime, retention_hours: int) -> datetime:
    """Segments ending before this are past their camera's retention."""
    return now - timedelta(hours=retention_hours)


@dataclass
class Plan:
    """What one step wants deleted (in order) and what it had to say."""

    deletions: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(c.size_bytes for c in self.deletions)


def plan_quota(usage: CameraUsage, oldest: Sequence[Candidate]) -> Plan:
    """Oldest-first deletions that bring one camera within its quota (``oldest``: its candidates, oldest first)."""
    plan = Plan()
    if usage.quota_bytes is None:
        return plan
    budget = usage.quota_bytes - usage.locked_bytes
    if budget <= 0:
        plan.notes.append("quota_locked")
        return plan
    excess = usage.deletable_bytes - budget
    for cand in oldest:
        if excess <= 0:
            break
        plan.deletions.append(cand)
        excess -= cand.size_bytes
    return plan


def fair_shares(usages: Iterable[CameraUsage], cap_bytes: int) -> dict[str, float]:
    """Each camera's share of the cap: ``cap * weight / sum(weights)`` (weight = quota, or 1 without one)."""
    items = list(usages)
    total_weight = sum(u.weight for u in items)
    if total_weight <= 0:
        return {}
    return {u.camera_id: cap_bytes * u.weight / total_weight for u in items}


def _pick_victims(
    totals: dict[str, int],
    locked: Mapping[str, int],
    queues: dict[str, list[Candidate]],
    shares: Mapping[str, float],
    count: int,
    notes: list[str],
) -> list[Candidate]:
    """Up to ``count`` victims by fair share; mutates ``totals``, ``queues`` and ``notes``.

    A camera over its share whose candidates ran out is left out from then on: ``over_share_all_protected``
    when what it has left is evidence-locked, ``need_more`` when the caller has not fetched enough of it
    (it fetches more and plans again). Upstream stops the whole step there; leaving just that camera out
    lets the others still be brought within the cap.
    """
    while True:
        over = [(totals[c] - shares.get(c, 0.0), c) for c in totals if totals[c] - shares.get(c, 0.0) > 0]
        if not over:
            break
        _, camera = max(over)
        queue = queues.get(camera) or []
        if queue:
            # At most ``count``, and no further than the camera's share (upstream takes a whole batch, which
            # can push a camera far below its share when segments are large against the cap).
            victims = []
            while queue and len(victims) < count and totals[camera] - shares.get(camera, 0.0) > 0:
                v = queue.pop(0)
                victims.append(v)
                totals[camera] -= v.size_bytes
            return victims
        notes.append("over_share_all_protected" if totals[camera] <= locked.get(camera, 0) else "need_more")
        del totals[camera]
    # Nobody (left) over share: oldest first across every camera.
    pool = sorted((c for q in queues.values() for c in q[:count]), key=lambda c: (c.start, c.segment_id))[:count]
    for v in pool:
        queues[v.camera_id].remove(v)
        if v.camera_id in totals:
            totals[v.camera_id] -= v.size_bytes
    if not pool:
        notes.append("nothing_deletable")
    return pool


def plan_cap(
    usages: Sequence[CameraUsage], oldest: Mapping[str, Sequence[Candidate]], cap_bytes: int, batch: int = BATCH
) -> Plan:
    """Deletions that bring all footage within ``cap_bytes``, chosen by fair share, ``batch`` at a time."""
    plan = Plan()
    locked_total = sum(u.locked_bytes for u in usages)
    budget = cap_bytes - locked_total
    if budget <= 0:
        plan.notes.append("locked_exceeds_cap")
        return plan
    totals = {u.camera_id: u.total_bytes for u in usages}
    locked = {u.camera_id: u.locked_bytes for u in usages}
    queues = {cid: list(oldest.get(cid, ())) for cid in totals}
    shares = fair_shares(usages, cap_bytes)
    deletable = sum(u.deletable_bytes for u in usages)
    while deletable > budget:
        victims = _pick_victims(totals, locked, queues, shares, batch, plan.notes)
        if not victims:
            break
        plan.deletions.extend(victims)
        deletable -= sum(v.size_bytes for v in victims)
    return plan


def floor_round_size(deficit_bytes: int, avg_segment_bytes: float) -> int:
    """How many segments one floor round deletes: ``clamp(deficit / avg_segment, 20, 256)``."""
    if avg_segment_bytes <= 0:
        return FLOOR_MIN_ROUND
    return int(min(max(deficit_bytes / avg_segment_bytes, FLOOR_MIN_ROUND), FLOOR_MAX_ROUND))


def floor_skip_reason(min_free_bytes: int, disk_total_bytes: int | None) -> str | None:
    """Why the floor step does not run this sweep, or None when it does."""
    if min_free_bytes <= 0:
        return "disabled"
    if disk_total_bytes is None:
        return "statvfs_unavailable"
    if min_free_bytes >= disk_total_bytes:
        return "floor_unsatisfiable"
    return None


def plan_floor_round(
    usages: Sequence[CameraUsage],
    oldest: Mapping[str, Sequence[Candidate]],
    cap_bytes: int,
    free_bytes: int,
    min_free_bytes: int,
) -> Plan:
    """One floor round: ``floor_round_size`` victims, chosen the cap's way (fair share of the cap)."""
    plan = Plan()
    deficit = min_free_bytes - free_bytes
    if deficit <= 0:
        return plan
    count = sum(len(v) for v in oldest.values())
    size = sum(c.size_bytes for v in oldest.values() for c in v)
    n = floor_round_size(deficit, size / count if count else 0.0)
    totals = {u.camera_id: u.total_bytes for u in usages}
    locked = {u.camera_id: u.locked_bytes for u in usages}
    queues = {cid: list(oldest.get(cid, ())) for cid in totals}
    shares = fair_shares(usages, cap_bytes)
    while len(plan.deletions) < n:
        victims = _pick_victims(totals, locked, queues, shares, n - len(plan.deletions), plan.notes)
        if not victims:
            break
        plan.deletions.extend(victims)
    return plan


def recovering(free_before: int, free_after: int) -> bool:
    """A floor round helped only when free space grew."""
    return free_after > free_before


@dataclass(frozen=True, slots=True)
class DiskFile:
    """A segment-named file on disk."""

    name: str
    size_bytes: int
    mtime: float


def orphans(files: Iterable[DiskFile], indexed: set[str], now: float, min_age_s: float = ORPHAN_MIN_AGE_S) -> list[str]:
    """Names of files with no segment row that are at least ``min_age_s`` old (recheck before deleting)."""
    return sorted(f.name for f in files if f.name not in indexed and now - f.mtime >= min_age_s)


def missing(rows: Iterable[str], on_disk: set[str]) -> list[str]:
    """Indexed names with no file on disk (recheck before deleting their rows)."""
    return sorted(name for name in rows if name not in on_disk)


def days_remaining(free_bytes: int | None, written_last_24h: int) -> float | None:
    """Days until the disk fills at the last day's write rate; None when unknown or nothing is written."""
    if free_bytes is None or written_last_24h <= 0:
        return None
    return round(free_bytes / written_last_24h, 2)
