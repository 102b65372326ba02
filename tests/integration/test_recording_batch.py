"""``apply_recording_batch`` against real PostgreSQL: idempotent, set-based, and opening exactly the gaps that
the one-segment-at-a-time rule opens (checked against that rule on random layouts)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.recording.records import RecordingBatch, SegmentRecord
from heldar.store import cameras as camera_store
from heldar.store.database import create_pool
from heldar.store.recording import apply_recording_batch

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
THRESHOLD = 3.0


@pytest.fixture(scope="module")
def url(new_database) -> Iterator[str]:  # type: ignore[no-untyped-def]
    yield new_database()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_pool(url: str, job: Any) -> Any:
    pool = await create_pool(url, max_size=2)
    try:
        return await job(pool)
    finally:
        await pool.close()


def _camera(url: str, camera_id: str) -> None:
    camera = Camera.from_create(CameraCreate(id=camera_id, name=camera_id, main_stream_url="rtsp://127.0.0.1/x"),
                                RecordingDefaults())  # fmt: skip
    run(_with_pool(url, lambda pool: camera_store.insert_camera(pool, camera)))


def seg(
    name: str, start_s: float, length_s: float = 2.0, source: str = "live", cause: str | None = None
) -> SegmentRecord:
    start = T0 + timedelta(seconds=start_s)
    return SegmentRecord(name, start, start + timedelta(seconds=length_s), length_s, 1000, "h264", 640, 360, 15.0,
                         source=source, gap_cause=cause)  # fmt: skip


def apply(url: str, camera_id: str, segments: list[SegmentRecord]) -> Any:
    batch = RecordingBatch(camera_id, segments)
    return run(_with_pool(url, lambda pool: apply_recording_batch(pool, batch, gap_threshold_s=THRESHOLD)))


def gaps(url: str, camera_id: str) -> list[tuple[float, float, str | None]]:
    async def job(pool: Any) -> list[tuple[float, float, str | None]]:
        rows = await pool.fetch(
            "SELECT gap_start, gap_end, cause FROM recording_gaps WHERE camera_id = $1 ORDER BY gap_start", camera_id
        )
        return [((r["gap_start"] - T0).total_seconds(), (r["gap_end"] - T0).total_seconds(), r["cause"]) for r in rows]

    return run(_with_pool(url, job))  # type: ignore[no-any-return]


def test_a_backlog_is_written_once_and_a_rewrite_updates(url: str) -> None:
    _camera(url, "backlog")
    backlog = [seg(f"{i:05d}.mp4", 2 * i) for i in range(1200)]
    applied = apply(url, "backlog", backlog)
    assert (applied.segments_inserted, applied.segments_updated, applied.gaps) == (1200, 0, [])
    again = apply(url, "backlog", backlog[:700])
    assert (again.segments_inserted, again.segments_updated) == (0, 0)
    rewritten = SegmentRecord(**{**backlog[5].__dict__, "size_bytes": 2000})
    assert apply(url, "backlog", [rewritten]).segments_updated == 1
    assert gaps(url, "backlog") == []


def test_holes_inside_and_before_a_batch_and_what_fills_them(url: str) -> None:
    _camera(url, "holes")
    apply(url, "holes", [seg("a.mp4", 0), seg("b.mp4", 2)])  # footage until 4 s
    batch = [
        seg("c.mp4", 20, cause="timeout: camera dropped"),  # hole 4 → 20 before the batch
        seg("d.mp4", 22),
        seg("e.mp4", 40, cause="stall: no bytes"),  # hole 24 → 40 inside the batch, but…
        seg("f.mp4", 24, length_s=10, source="backfill"),  # …back-fill covers 24 → 34, so the hole is 34 → 40
        seg("g.mp4", 60, cause="refused: 503"),  # hole 42 → 60, filled by an indexed back-fill segment
    ]
    apply(url, "holes", [seg("m.mp4", 42, length_s=18, source="backfill")])
    apply(url, "holes", batch)
    assert gaps(url, "holes") == [(4.0, 20.0, "timeout: camera dropped"), (34.0, 40.0, "stall: no bytes")]


def _reference_gaps(existing: list[SegmentRecord], batch: list[SegmentRecord]) -> list[tuple[float, float]]:
    """The rule one segment at a time: each new live segment, in start order, against everything that started
    strictly before it (already indexed, or inserted earlier from this batch)."""
    seen = [(s.start, s.end) for s in existing]
    names = {s.file_name for s in existing}
    found = []
    for s in sorted(batch, key=lambda x: (x.start, x.file_name)):
        if s.file_name in names:
            continue
        before = [end for start, end in seen if start < s.start]
        if s.source == "live" and before and (s.start - max(before)).total_seconds() > THRESHOLD:
            found.append(((max(before) - T0).total_seconds(), (s.start - T0).total_seconds()))
        seen.append((s.start, s.end))
        names.add(s.file_name)
    return found


@pytest.mark.parametrize("seed", range(12))
def test_same_gaps_as_the_one_segment_at_a_time_rule(url: str, seed: int) -> None:
    rng = random.Random(seed)
    camera_id = f"random-{seed}"
    _camera(url, camera_id)
    layout, t = [], 0.0
    for i in range(rng.randint(20, 60)):
        t += rng.choice([2.0, 2.0, 2.0, 2.5, 6.0, 15.0])
        layout.append(seg(f"{i:03d}.mp4", t, rng.choice([2.0, 2.0, 4.0]), rng.choice(["live"] * 5 + ["backfill"])))
    existing = [s for s in layout if rng.random() < 0.3]
    batch = [s for s in layout if s not in existing] + rng.sample(existing, k=min(3, len(existing)))
    rng.shuffle(batch)
    apply(url, camera_id, existing)
    apply(url, camera_id, batch)
    expected = _reference_gaps([], existing)
    expected += [g for g in _reference_gaps(existing, batch) if g[0] not in {e[0] for e in expected}]
    got = [(start, end) for start, end, _ in gaps(url, camera_id)]
    assert sorted(got) == sorted(set(expected)), (seed, got, expected)
