"""One retention sweep over real files and PostgreSQL (no Ray: the actor in ``actors/retention.py`` runs it).

A sweep takes the cluster-wide leader lock (a PostgreSQL advisory lock), then runs the steps of
:mod:`heldar.storage.retention` in order: age, quota, cap, floor, orphans and vanished files (about hourly),
rows. Each footage batch is one short transaction:

1. ``DELETE ... WHERE id = ANY(batch) AND NOT evidence_locked AND <no live read lock> RETURNING *``;
2. unlink each deleted row's file (a file already gone counts as removed);
3. rows whose unlink failed for another reason are inserted again, in the same transaction;
4. one ``retention_delete`` event per batch and the cumulative counters, then COMMIT.

So a file is unlinked only when its row went, a failed unlink keeps the row, and a lock taken after
selection wins (the conditional delete skips that row). If the COMMIT itself fails after the unlinks, the
rows survive with no file; the next vanished-file pass removes them (event ``segment_missing``), so the
timeline is never wrong for longer than one orphan interval.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from heldar.media.segment_names import day_dirs, recent_days, segment_file_names, segment_paths
from heldar.storage import retention as policy
from heldar.storage.purge import remove_trash
from heldar.storage.retention import CameraUsage, Candidate, Limits
from heldar.store import retention as store
from heldar.store.events import insert_event
from heldar.zones.evidence import prune_evidence

logger = logging.getLogger(__name__)

DELETE_CHUNK = 256
AGE_PAGE = 500
MAX_CAP_ROUNDS = 100
ROW_BATCH = 5000
MAX_ROW_BATCHES = 200  # per table per sweep: a huge backlog is worked off over several sweeps
ORPHAN_EVERY_S = 3600.0
NAME_PAGE = 10_000

DiskUsage = Callable[[Path], Any]


@dataclass(frozen=True)
class SweepConfig:
    recordings_root: Path
    max_recordings_gb: float = 20.0
    min_free_disk_gb: float = 5.0
    detection_retention_hours: float = 168.0
    event_retention_days: float = 365.0
    orphan_every_s: float = ORPHAN_EVERY_S
    orphan_min_age_s: float = policy.ORPHAN_MIN_AGE_S
    row_batch: int = ROW_BATCH
    evidence_root: Path | None = None  # zone evidence JPEGs, pruned with the zone events they belong to
    clips_root: Path | None = None  # exported clips (media plane); None: no clip step


@dataclass
class Outcome:
    started_at: datetime
    leader: str
    limits: dict[str, Any] = field(default_factory=dict)
    deleted: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: {"segments": 0, "bytes": 0}))
    rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kept_after_failed_unlink: int = 0
    locked_bytes: int = 0
    disk: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    orphan_pass: bool = False
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def as_dict(self, finished_at: datetime) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "duration_s": round((finished_at - self.started_at).total_seconds(), 3),
            "leader": self.leader,
            "skipped": self.skipped,
            "ok": not self.errors and self.skipped is None,
            "limits": self.limits,
            "deleted": {k: dict(v) for k, v in self.deleted.items()},
            "rows": self.rows,
            "notes": sorted(set(self.notes)),
            "errors": self.errors,
            "kept_after_failed_unlink": self.kept_after_failed_unlink,
            "evidence_locked_bytes": self.locked_bytes,
            "disk": self.disk,
            "orphan_pass": self.orphan_pass,
        }


def disk_figures(path: Path, usage: DiskUsage = shutil.disk_usage) -> dict[str, int] | None:
    """``{total, free, used}`` bytes of the filesystem holding ``path`` (free = available to us), or None."""
    try:
        du = usage(path)
    except OSError:
        return None
    return {"total": int(du.total), "free": int(du.free), "used": int(du.used)}


def _unlink(camera_dir: Path, name: str) -> OSError | None:
    """Remove the file of segment ``name`` wherever it lives; None when it is gone (or was already)."""
    for path in segment_paths(camera_dir, name):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return exc
    return None


class RetentionSweeper:
    """Runs sweeps; remembers what the last one had to say (to write a persistent condition's event once)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: SweepConfig,
        leader: str,
        *,
        disk_usage: DiskUsage = shutil.disk_usage,
        unlink: Callable[[Path, str], OSError | None] = _unlink,
    ) -> None:
        self.pool = pool
        self.config = config
        self.leader = leader
        self.disk_usage = disk_usage
        self.unlink = unlink
        self.last_outcome: dict[str, Any] | None = None
        self._last_orphan_pass = 0.0
        self._raised: set[str] = set()  # conditions whose event has been written and not cleared since

    # --- the sweep --------------------------------------------------------------------------------
    async def sweep(self, *, orphans: bool | None = None, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        outcome = Outcome(started_at=datetime.now(UTC), leader=self.leader)
        async with self.pool.acquire() as lock_conn:
            if not await store.try_leader_lock(lock_conn):
                outcome.skipped = "not_leader"
                return outcome.as_dict(datetime.now(UTC))
            try:
                await self._steps(outcome, now, orphans)
            finally:
                await store.release_leader_lock(lock_conn)
        finished = datetime.now(UTC)
        result = outcome.as_dict(finished)
        try:
            await store.record_sweep(self.pool, outcome.started_at, finished, result["ok"], self.leader, result)
        except Exception as exc:
            logger.warning("retention: could not record the sweep outcome: %s", exc.__class__.__name__)
        self.last_outcome = result
        return result

    async def _steps(self, outcome: Outcome, now: datetime, orphans: bool | None) -> None:
        overrides = await store.get_overrides(self.pool)
        limits = policy.resolve_limits(
            self.config.max_recordings_gb,
            self.config.min_free_disk_gb,
            overrides.get("max_recordings_gb"),
            overrides.get("min_free_disk_gb"),
        )
        outcome.limits = {
            "max_recordings_bytes": limits.max_recordings_bytes,
            "max_overridden": limits.max_overridden,
            "min_free_disk_bytes": limits.min_free_disk_bytes,
            "min_free_overridden": limits.min_free_overridden,
        }
        steps: list[tuple[str, Any]] = [
            ("age", lambda: self._age(outcome, now)),
            ("quota", lambda: self._quota(outcome)),
            ("cap", lambda: self._cap(outcome, limits)),
            ("floor", lambda: self._floor(outcome, limits)),
        ]
        due = time.monotonic() - self._last_orphan_pass >= self.config.orphan_every_s
        if orphans or (orphans is None and due):
            steps.append(("orphans", lambda: self._files(outcome)))
        steps.append(("rows", lambda: self._rows(outcome, now)))
        if self.config.clips_root is not None:
            steps.append(("clips", lambda: self._clips(outcome, now)))
        for name, step in steps:
            try:
                await step()
            except Exception as exc:
                logger.exception("retention step %s failed", name)
                outcome.errors.append(f"{name}: {exc.__class__.__name__}")
        for name, payload in outcome.events:
            logger.warning("retention: %s (%s)", name, payload)
            await insert_event(self.pool, f"retention_{name}", severity="warning", payload=payload)
        disk = disk_figures(self.config.recordings_root, self.disk_usage)
        outcome.disk = disk or {}

    # --- deleting ---------------------------------------------------------------------------------
    async def _delete(self, outcome: Outcome, victims: Sequence[Candidate], reason: str) -> dict[str, int]:
        """Delete ``victims`` conditionally, chunk by chunk; bytes actually freed per camera."""
        freed: dict[str, int] = defaultdict(int)
        by_camera: dict[str, list[str]] = defaultdict(list)
        for v in victims:
            by_camera[v.camera_id].append(v.segment_id)
        for camera_id, ids in by_camera.items():
            camera_dir = self.config.recordings_root / camera_id
            for i in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[i : i + DELETE_CHUNK]
                async with self.pool.acquire() as conn, conn.transaction():
                    rows = await store.delete_segments(conn, chunk)
                    if not rows:
                        continue
                    failed = await asyncio.to_thread(self._unlink_rows, camera_dir, rows)
                    if failed:
                        await store.reinsert_segments(conn, failed)
                        outcome.kept_after_failed_unlink += len(failed)
                    gone = [r for r in rows if r not in failed]
                    if not gone:
                        continue
                    size = sum(int(r["size_bytes"]) for r in gone)
                    await insert_event(
                        conn, "retention_delete", camera_id=camera_id,
                        payload={"reason": reason, "count": len(gone), "bytes": size,
                                 "oldest": min(r["start_time"] for r in gone).isoformat(),
                                 "newest": max(r["end_time"] for r in gone).isoformat()},
                    )  # fmt: skip
                    await store.add_totals(conn, reason, len(gone), size)
                freed[camera_id] += size
                outcome.deleted[reason]["segments"] += len(gone)
                outcome.deleted[reason]["bytes"] += size
        return dict(freed)

    def _unlink_rows(self, camera_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        failed = []
        for row in rows:
            error = self.unlink(camera_dir, row["file_name"])
            if error is not None:
                logger.warning("retention: cannot remove %s/%s (%s); keeping its row",
                               camera_dir.name, row["file_name"], error.strerror or error)  # fmt: skip
                failed.append(row)
        return failed

    # --- steps ------------------------------------------------------------------------------------
    async def _age(self, outcome: Outcome, now: datetime) -> None:
        for fp in await store.camera_usage(self.pool):
            cutoff = policy.age_cutoff(now, fp.retention_hours)
            while True:
                cands = await store.expired_candidates(self.pool, fp.usage.camera_id, cutoff, AGE_PAGE)
                if not cands:
                    break
                freed = await self._delete(outcome, cands, "age")
                if not freed or len(cands) < AGE_PAGE:
                    break

    async def _quota(self, outcome: Outcome) -> None:
        for fp in await store.camera_usage(self.pool):
            usage = fp.usage
            for _ in range(MAX_CAP_ROUNDS):
                if usage.quota_bytes is None or usage.total_bytes <= usage.quota_bytes:
                    break
                need = usage.total_bytes - usage.quota_bytes
                limit = _count_for(need, fp.avg_segment_bytes)
                plan = policy.plan_quota(usage, await store.oldest_candidates(self.pool, usage.camera_id, limit))
                outcome.notes.extend(plan.notes)
                if not plan.deletions:
                    break
                freed = (await self._delete(outcome, plan.deletions, "quota")).get(usage.camera_id, 0)
                if freed <= 0:
                    break
                usage = replace(usage, total_bytes=usage.total_bytes - freed)

    async def _fetch_for_share(
        self, footprints: Sequence[store.CameraFootprint], cap_bytes: int, extra: int
    ) -> dict[str, list[Candidate]]:
        shares = policy.fair_shares([f.usage for f in footprints], cap_bytes)
        oldest: dict[str, list[Candidate]] = {}
        for fp in footprints:
            over = fp.usage.total_bytes - shares.get(fp.usage.camera_id, 0.0)
            limit = _count_for(int(max(over, 0)), fp.avg_segment_bytes) + extra
            oldest[fp.usage.camera_id] = await store.oldest_candidates(self.pool, fp.usage.camera_id, limit)
        return oldest

    async def _cap(self, outcome: Outcome, limits: Limits) -> None:
        cap = limits.max_recordings_bytes
        for _ in range(MAX_CAP_ROUNDS):
            footprints = await store.camera_usage(self.pool)
            usages = [f.usage for f in footprints]
            locked = sum(u.locked_bytes for u in usages)
            outcome.locked_bytes = locked
            self._condition(outcome, "locked_exceeds_cap", locked >= cap, {"locked_bytes": locked, "cap_bytes": cap})
            if sum(u.total_bytes for u in usages) <= cap or locked >= cap:
                return
            oldest = await self._fetch_for_share(footprints, cap, policy.BATCH)
            plan = policy.plan_cap(usages, oldest, cap)
            outcome.notes.extend(n for n in plan.notes if n != "need_more")
            if not plan.deletions:
                return
            freed = await self._delete(outcome, plan.deletions, "cap")
            if not freed:
                return

    async def _floor(self, outcome: Outcome, limits: Limits) -> None:
        floor = limits.min_free_disk_bytes
        disk = disk_figures(self.config.recordings_root, self.disk_usage)
        skip = policy.floor_skip_reason(floor, None if disk is None else disk["total"])
        if skip is not None:
            if skip != "disabled":
                outcome.notes.append(skip)
            return
        assert disk is not None
        below = disk["free"] < floor
        self._condition(outcome, "disk_low", below, {"free_bytes": disk["free"], "min_free_bytes": floor})
        for _ in range(policy.FLOOR_MAX_ROUNDS):
            if disk["free"] >= floor:
                return
            footprints = await store.camera_usage(self.pool)
            usages = [f.usage for f in footprints]
            oldest = await self._fetch_for_share(footprints, limits.max_recordings_bytes, policy.FLOOR_MAX_ROUND)
            plan = policy.plan_floor_round(usages, oldest, limits.max_recordings_bytes, disk["free"], floor)
            outcome.notes.extend(n for n in plan.notes if n != "need_more")
            if not plan.deletions:
                return
            before = disk["free"]
            await self._delete(outcome, plan.deletions, "floor")
            after = disk_figures(self.config.recordings_root, self.disk_usage)
            if after is None:
                return
            disk = after
            if not policy.recovering(before, disk["free"]):
                outcome.notes.append("prune_not_recovering_space")
                return

    async def _files(self, outcome: Outcome) -> None:
        """Orphans (files with no row, at least an hour old) and vanished files (rows with no file)."""
        self._last_orphan_pass = time.monotonic()
        outcome.orphan_pass = True
        root = self.config.recordings_root
        try:
            folders = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            folders = []
        trash = await asyncio.to_thread(remove_trash, root)
        if trash:
            outcome.notes.append("trash_removed")
        known = set(await store.camera_ids(self.pool))
        for camera_id in sorted(set(folders) | known):
            if camera_id.startswith("."):
                continue  # trash folders of deleted cameras: removed by the delete itself
            await self._camera_files(outcome, camera_id, root / camera_id)

    async def _camera_files(self, outcome: Outcome, camera_id: str, camera_dir: Path) -> None:
        files = await asyncio.to_thread(segment_file_names, camera_dir)  # name → folder, no stat
        missing: list[str] = []
        after: tuple[datetime, str] | None = None
        while True:
            page = await store.indexed_names_page(self.pool, camera_id, after, NAME_PAGE)
            for _, _, name in page:
                if files.pop(name, None) is None:
                    missing.append(name)
            if len(page) < NAME_PAGE:
                break
            after = (page[-1][0], page[-1][1])
        # Vanished: recheck on disk (a row may have been written after the listing), then remove conditionally.
        gone = [n for n in missing if not any(p.exists() for p in segment_paths(camera_dir, n))]
        for i in range(0, len(gone), DELETE_CHUNK):
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await store.delete_missing(conn, camera_id, gone[i : i + DELETE_CHUNK])
                if rows:
                    size = sum(int(r["size_bytes"]) for r in rows)
                    logger.warning("camera %s: %d indexed segment file(s) vanished from disk", camera_id, len(rows))
                    await insert_event(
                        conn, "segment_missing", camera_id=camera_id, severity="warning",
                        payload={"count": len(rows), "bytes": size, "files": [r["file_name"] for r in rows[:20]]},
                    )  # fmt: skip
                    await store.add_totals(conn, "missing", len(rows), size)
                    outcome.deleted["missing"]["segments"] += len(rows)
                    outcome.deleted["missing"]["bytes"] += size
        # Orphans: unindexed and old enough (only these are stat'ed); rechecked against the table before unlinks.
        stats = await asyncio.to_thread(_stat_all, files)
        stale = policy.orphans(
            [policy.DiskFile(name, size, mtime) for name, (size, mtime) in stats.items()],
            set(), time.time(), self.config.orphan_min_age_s,
        )  # fmt: skip
        removed = removed_bytes = 0
        for i in range(0, len(stale), DELETE_CHUNK):
            chunk = stale[i : i + DELETE_CHUNK]
            indexed = await store.indexed_names(self.pool, camera_id, chunk)
            for name in chunk:
                if name in indexed:
                    continue
                path = Path(files[name]) / name  # where it was listed (a misplaced file too)
                try:
                    await asyncio.to_thread(path.unlink)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    logger.warning("camera %s: cannot remove orphan %s: %s", camera_id, name, exc.strerror or exc)
                    continue
                removed += 1
                removed_bytes += stats[name][0]
        if removed:
            logger.info("camera %s: removed %d orphaned segment file(s)", camera_id, removed)
            await insert_event(
                self.pool, "recording_orphans", camera_id=camera_id,
                payload={"reason": "orphan", "count": removed, "bytes": removed_bytes},
            )  # fmt: skip
            await store.add_totals(self.pool, "orphan", removed, removed_bytes)
            outcome.deleted["orphan"]["segments"] += removed
            outcome.deleted["orphan"]["bytes"] += removed_bytes
        await asyncio.to_thread(_drop_empty_day_dirs, camera_dir)

    async def _rows(self, outcome: Outcome, now: datetime) -> None:
        horizons = {
            "detection": now - timedelta(hours=self.config.detection_retention_hours),
            "event": now - timedelta(days=self.config.event_retention_days),
            "sweep": now - timedelta(days=min(7.0, self.config.event_retention_days)),
            "now": now,
        }
        for table, column, extra, horizon in store.ROW_RULES:
            total = 0
            for _ in range(MAX_ROW_BATCHES):
                n = await store.prune_rows_batch(
                    self.pool, table, column, extra, horizons[horizon], self.config.row_batch
                )
                total += n
                await asyncio.sleep(0)  # yield between batches: never one long transaction
                if n < self.config.row_batch:
                    break
            if total:
                outcome.rows[table] = total
        if self.config.evidence_root is not None:
            removed = await asyncio.to_thread(prune_evidence, self.config.evidence_root, horizons["detection"])
            if removed:
                outcome.rows["evidence_files"] = removed

    # --- persistent conditions --------------------------------------------------------------------
    async def _clips(self, outcome: Outcome, now: datetime) -> None:
        """Exported clips past their expiry (media plane): rows, then files."""
        from heldar.media.clips import expire_clips

        assert self.config.clips_root is not None
        outcome.rows["clips"] = (await expire_clips(self.pool, self.config.clips_root, now))["clips"]

    def _condition(self, outcome: Outcome, name: str, active: bool, payload: dict[str, Any]) -> None:
        """Note ``name`` while active; write its event once when it starts (again after it cleared)."""
        if not active:
            self._raised.discard(name)
            return
        outcome.notes.append(name)
        if name not in self._raised:
            self._raised.add(name)
            outcome.events.append((name, payload))


def _stat_all(files: dict[str, str]) -> dict[str, tuple[int, float]]:
    """(size, mtime) of each listed file still there."""
    out = {}
    for name, folder in files.items():
        try:
            st = os.stat(os.path.join(folder, name), follow_symlinks=False)
        except OSError:
            continue
        out[name] = (st.st_size, st.st_mtime)
    return out


def _count_for(need_bytes: int, avg_segment_bytes: float) -> int:
    """How many oldest candidates to fetch to cover ``need_bytes`` (bounded; the caller loops for more)."""
    if need_bytes <= 0:
        return 0
    if avg_segment_bytes <= 0:
        return 1000
    return int(min(max(need_bytes / avg_segment_bytes * 1.2 + 1, 1), 5000))


def _drop_empty_day_dirs(camera_dir: Path) -> None:
    """Remove empty day folders older than yesterday (today's and tomorrow's are ffmpeg's to write into)."""
    keep = set(recent_days(datetime.now(UTC), 2)) | {(datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")}
    for day in day_dirs(camera_dir):
        if day in keep:
            continue
        try:
            (camera_dir / day).rmdir()
        except OSError:
            pass  # not empty (or already gone)


__all__ = ["CameraUsage", "RetentionSweeper", "SweepConfig", "disk_figures"]
