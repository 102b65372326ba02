"""The retention sweeper on real files and real PostgreSQL (no recorder: segments are written directly).

Each test gets its own database and recordings folder.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from heldar.storage.sweeper import RetentionSweeper, SweepConfig
from heldar.store import retention as retention_store
from heldar.store import storage as storage_store
from heldar.store.database import create_pool
from tests.integration.storage_env import add_camera, add_segments, bytes_on_disk, file_of, files_on_disk

pytestmark = pytest.mark.integration

KB = 1024
GB = 1024**3


@pytest.fixture
def url(new_database) -> str:  # type: ignore[no-untyped-def]
    return new_database()  # type: ignore[no-any-return]


def sweeper(pool: asyncpg.Pool, root: Path, **config: Any) -> RetentionSweeper:
    values: dict[str, Any] = {"max_recordings_gb": 1000.0, "min_free_disk_gb": 0.0, **config}
    return RetentionSweeper(pool, SweepConfig(recordings_root=root, **values), "test")


def go(url: str, job: Any) -> Any:
    async def main() -> Any:
        pool = await create_pool(url, max_size=6)
        try:
            return await job(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


async def segment_names(pool: asyncpg.Pool, camera_id: str) -> list[str]:
    rows = await pool.fetch("SELECT file_name FROM segments WHERE camera_id = $1 ORDER BY start_time", camera_id)
    return [r["file_name"] for r in rows]


async def events(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT camera_id, payload FROM events WHERE event_type = $1 ORDER BY seq", event_type)
    return [dict(r) for r in rows]


def test_age_deletes_expired_footage_oldest_first_and_keeps_evidence(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "cam", retention_hours=1)
        now = datetime.now(UTC)
        old = await add_segments(pool, tmp_path, "cam", 10, start=now - timedelta(hours=3))
        new = await add_segments(pool, tmp_path, "cam", 5, start=now - timedelta(minutes=10), token="new")
        await storage_store.set_evidence_lock(pool, old[3]["id"], True, "inc-1")
        outcome = await sweeper(pool, tmp_path).sweep()
        assert outcome["ok"], outcome
        left = await segment_names(pool, "cam")
        assert left == [old[3]["file_name"]] + [r["file_name"] for r in new]
        assert files_on_disk(tmp_path, "cam") == set(left)
        assert outcome["deleted"]["age"] == {"segments": 9, "bytes": 9000}
        evs = await events(pool, "retention_delete")
        assert evs and all(e["payload"]["reason"] == "age" and e["camera_id"] == "cam" for e in evs)
        assert sum(e["payload"]["count"] for e in evs) == 9
        assert sum(e["payload"]["bytes"] for e in evs) == 9000
        assert await retention_store.totals(pool) == {"age": (9, 9000)}

    go(url, job)


def test_quota_keeps_the_newest_within_quota(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "q", storage_quota_bytes=10 * KB)
        rows = await add_segments(pool, tmp_path, "q", 30, size=KB)
        await storage_store.set_evidence_lock(pool, rows[0]["id"], True)
        outcome = await sweeper(pool, tmp_path).sweep()
        left = await segment_names(pool, "q")
        # quota 10 KB: the locked oldest plus the 9 newest.
        assert left == [rows[0]["file_name"]] + [r["file_name"] for r in rows[-9:]]
        assert bytes_on_disk(tmp_path, "q") == 10 * KB
        assert outcome["deleted"]["quota"]["segments"] == 20

    go(url, job)


def test_cap_fair_share_by_quota_weight(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        # cap 60 KB; quotas 100 KB and 50 KB (weights 2:1, neither quota binds) → shares 40 KB and 20 KB.
        await add_camera(pool, "big", storage_quota_bytes=100 * KB)
        await add_camera(pool, "small", storage_quota_bytes=50 * KB)
        big = await add_segments(pool, tmp_path, "big", 50, size=KB)
        small = await add_segments(pool, tmp_path, "small", 50, size=KB)
        outcome = await sweeper(pool, tmp_path, max_recordings_gb=60 * KB / GB).sweep()
        assert outcome["ok"], outcome
        big_left, small_left = await segment_names(pool, "big"), await segment_names(pool, "small")
        assert bytes_on_disk(tmp_path) <= 60 * KB
        assert 38 <= len(big_left) <= 40 and 18 <= len(small_left) <= 20, (len(big_left), len(small_left))
        # Oldest went first in each camera.
        assert big_left == [r["file_name"] for r in big[-len(big_left) :]]
        assert small_left == [r["file_name"] for r in small[-len(small_left) :]]
        assert {e["payload"]["reason"] for e in await events(pool, "retention_delete")} == {"cap"}

    go(url, job)


def test_locks_alone_over_the_cap_are_reported_and_nothing_locked_goes(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "ev")
        rows = await add_segments(pool, tmp_path, "ev", 20, size=KB)
        for r in rows[:15]:
            await storage_store.set_evidence_lock(pool, r["id"], True, "case-7")
        sw = sweeper(pool, tmp_path, max_recordings_gb=10 * KB / GB)
        outcome = await sw.sweep()
        assert "locked_exceeds_cap" in outcome["notes"]
        assert outcome["evidence_locked_bytes"] == 15 * KB
        assert len(await segment_names(pool, "ev")) == 20  # nothing deleted: locks exceed the cap
        assert len(await events(pool, "retention_locked_exceeds_cap")) == 1
        await sw.sweep()
        assert len(await events(pool, "retention_locked_exceeds_cap")) == 1  # once, not every sweep

    go(url, job)


def test_evidence_lock_survives_every_step(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "all", retention_hours=1, storage_quota_bytes=KB)
        now = datetime.now(UTC)
        rows = await add_segments(pool, tmp_path, "all", 10, size=KB, start=now - timedelta(hours=5))
        pinned = rows[0]
        await storage_store.set_evidence_lock(pool, pinned["id"], True)
        # Age, quota, cap (1 KB) and floor (asks for the whole disk minus a little: always below it) all run.
        total = os.statvfs(tmp_path).f_blocks * os.statvfs(tmp_path).f_frsize
        sw = sweeper(pool, tmp_path, max_recordings_gb=KB / GB, min_free_disk_gb=(total - 1) / GB)
        outcome = await sw.sweep(orphans=True)
        assert await segment_names(pool, "all") == [pinned["file_name"]]
        assert file_of(tmp_path, "all", pinned["file_name"]).exists()
        assert outcome["ok"], outcome

    go(url, job)


def test_read_lock_taken_between_selection_and_delete_wins(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "rl", retention_hours=1)
        rows = await add_segments(pool, tmp_path, "rl", 6, size=KB, start=datetime.now(UTC) - timedelta(hours=4))
        sw = sweeper(pool, tmp_path)
        selected = await retention_store.expired_candidates(pool, "rl", datetime.now(UTC), 100)
        assert len(selected) == 6
        lock = await storage_store.acquire_read_lock(pool, "rl", holder="clip-export", segment_ids=[rows[2]["id"]])
        assert lock.segment_ids == (rows[2]["id"],)
        await sw._delete(sw_outcome(), selected, "age")
        assert await segment_names(pool, "rl") == [rows[2]["file_name"]]
        assert file_of(tmp_path, "rl", rows[2]["file_name"]).exists()
        assert await storage_store.read_lock_counts(pool, [rows[2]["id"]]) == {rows[2]["id"]: 1}
        await storage_store.release_read_lock(pool, lock.id)
        assert await storage_store.read_lock_counts(pool, [rows[2]["id"]]) == {rows[2]["id"]: 0}
        await sw.sweep()
        assert await segment_names(pool, "rl") == []

    go(url, job)


def test_read_lock_committed_while_the_delete_waits_still_wins(url: str, tmp_path: Path) -> None:
    """The reader's lock transaction holds the row when the delete arrives; the delete re-checks and skips."""

    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "race")
        rows = await add_segments(pool, tmp_path, "race", 3, size=KB)
        sw = sweeper(pool, tmp_path)
        selected = await retention_store.oldest_candidates(pool, "race", 10)
        reader = await pool.acquire()
        tx = reader.transaction()
        await tx.start()
        await reader.execute(
            "UPDATE segments SET read_lock_until = now() + interval '5 minutes' WHERE id = $1", rows[1]["id"]
        )
        deleting = asyncio.create_task(sw._delete(sw_outcome(), selected, "cap"))
        await asyncio.sleep(0.5)
        assert not deleting.done()  # blocked on the reader's row
        await tx.commit()
        await pool.release(reader)
        await asyncio.wait_for(deleting, 10)
        assert await segment_names(pool, "race") == [rows[1]["file_name"]]
        assert file_of(tmp_path, "race", rows[1]["file_name"]).exists()

    go(url, job)


def test_expired_read_lock_does_not_protect(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "exp", retention_hours=1)
        start = datetime.now(UTC) - timedelta(hours=3)
        await add_segments(pool, tmp_path, "exp", 4, size=KB, start=start)
        lock = await storage_store.acquire_read_lock(
            pool, "exp", holder="dead-reader", start=start, end=start + timedelta(hours=1), ttl_s=0.5
        )
        assert len(lock.segment_ids) == 4
        await asyncio.sleep(1.0)  # the reader died without releasing
        assert not await storage_store.renew_read_lock(pool, lock.id)
        await sweeper(pool, tmp_path).sweep()
        assert await segment_names(pool, "exp") == []

    go(url, job)


def test_failed_unlink_keeps_the_row(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "ro", retention_hours=1)
        rows = await add_segments(pool, tmp_path, "ro", 4, size=KB, start=datetime.now(UTC) - timedelta(hours=2))
        stuck = rows[1]["file_name"]

        def unlink(camera_dir: Path, name: str) -> OSError | None:
            if name == stuck:
                return PermissionError(13, "Permission denied")
            (file_of(tmp_path, "ro", name)).unlink()
            return None

        sw = RetentionSweeper(pool, SweepConfig(tmp_path, min_free_disk_gb=0), "test", unlink=unlink)
        outcome = await sw.sweep()
        assert await segment_names(pool, "ro") == [stuck]
        assert outcome["kept_after_failed_unlink"] == 1
        assert outcome["deleted"]["age"]["segments"] == 3

    go(url, job)


def test_vanished_file_becomes_a_gap_and_an_event_and_orphans_go(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "hand")
        rows = await add_segments(pool, tmp_path, "hand", 10, size=KB)
        file_of(tmp_path, "hand", rows[4]["file_name"]).unlink()  # deleted by hand
        # Two unindexed files: one old (an orphan), one fresh (maybe not indexed yet: kept).
        old = file_of(tmp_path, "hand", rows[0]["file_name"]).with_name("20200101T000000Z_zz1.mp4")
        old.write_bytes(b"x" * 10)
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        young = file_of(tmp_path, "hand", rows[0]["file_name"]).with_name("20200101T000002Z_zz2.mp4")
        young.write_bytes(b"y")
        outcome = await sweeper(pool, tmp_path).sweep(orphans=True)
        assert outcome["deleted"]["missing"] == {"segments": 1, "bytes": KB}
        assert outcome["deleted"]["orphan"] == {"segments": 1, "bytes": 10}
        assert not old.exists() and young.exists()
        assert rows[4]["file_name"] not in await segment_names(pool, "hand")
        (missing,) = await events(pool, "segment_missing")
        assert missing["camera_id"] == "hand" and missing["payload"]["files"] == [rows[4]["file_name"]]
        gap = await pool.fetchrow("SELECT gap_start, gap_end, cause FROM recording_gaps WHERE camera_id = 'hand'")
        assert gap["cause"] == "file_missing" and gap["gap_start"] == rows[4]["start_time"]
        assert len(await events(pool, "recording_orphans")) == 1

    go(url, job)


def test_floor_frees_space_on_a_small_filesystem(url: str, tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=8m tmpfs {mount} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the floor is covered by the unit tests")
    try:

        async def job(pool: asyncpg.Pool) -> None:
            await add_camera(pool, "a")
            await add_camera(pool, "b")
            await add_segments(pool, mount, "a", 40, size=100 * KB)  # 4 MB
            await add_segments(pool, mount, "b", 20, size=100 * KB)  # 2 MB
            free_before = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
            assert free_before < 2.5 * 1024 * KB
            floor = 4 * 1024 * KB  # want 4 MB free on an 8 MB filesystem
            outcome = await sweeper(pool, mount, min_free_disk_gb=floor / GB).sweep()
            free_after = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
            assert free_after >= floor, outcome
            assert outcome["deleted"]["floor"]["segments"] >= 16
            assert "disk_low" in outcome["notes"]
            left_a, left_b = len(await segment_names(pool, "a")), len(await segment_names(pool, "b"))
            assert left_a < 40 and left_a + left_b <= 44
            assert bytes_on_disk(mount) == (left_a + left_b) * 100 * KB

        go(url, job)
    finally:
        os.system(f"umount {mount}")


def test_row_retention_removes_old_rows_in_batches_while_ingest_runs(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        await add_camera(pool, "det")
        old = datetime.now(UTC) - timedelta(days=10)
        await pool.execute(
            'INSERT INTO detections (id, camera_id, task_type, "timestamp", frame_id, provenance, created_at)'
            " SELECT 'd' || g, 'det', 'person', $1, 'f' || g, 'test', $1 FROM generate_series(1, 2500) g",
            old,
        )
        await pool.execute(
            'INSERT INTO events (id, camera_id, event_type, "timestamp", created_at)'
            " SELECT gen_random_uuid(), 'det', 'old', $1, $1 FROM generate_series(1, 1200) g",
            datetime.now(UTC) - timedelta(days=400),
        )
        stop = asyncio.Event()
        written = 0

        async def ingest() -> None:
            nonlocal written
            while not stop.is_set():
                await pool.execute(
                    'INSERT INTO detections (id, camera_id, task_type, "timestamp", frame_id, provenance)'
                    " VALUES ($1, 'det', 'person', now(), $1, 'test')",
                    f"live{written}",
                )
                written += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ingest())
        await asyncio.sleep(0.2)
        outcome = await sweeper(pool, tmp_path, row_batch=100).sweep()
        stop.set()
        await task
        assert outcome["rows"]["detections"] == 2500 and outcome["rows"]["events"] == 1200
        left = await pool.fetchval("SELECT count(*) FROM detections")
        assert left == written and written > 0  # every live row kept, every old one gone
        assert await pool.fetchval("SELECT count(*) FROM events WHERE event_type = 'old'") == 0

    go(url, job)


def test_a_second_sweeper_skips_while_the_leader_lock_is_held(url: str, tmp_path: Path) -> None:
    async def job(pool: asyncpg.Pool) -> None:
        holder = await pool.acquire()
        assert await retention_store.try_leader_lock(holder)
        outcome = await sweeper(pool, tmp_path).sweep()
        assert outcome["skipped"] == "not_leader"
        await retention_store.release_leader_lock(holder)
        await pool.release(holder)
        assert (await sweeper(pool, tmp_path).sweep())["skipped"] is None
        last = await retention_store.last_sweep(pool)
        assert last is not None and last["ok"]

    go(url, job)


def sw_outcome() -> Any:
    from heldar.storage.sweeper import Outcome

    return Outcome(started_at=datetime.now(UTC), leader="test")
