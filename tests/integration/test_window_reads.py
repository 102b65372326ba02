"""The database-side union of footage (``window_coverage``) equals the pure coverage maths on random layouts:
overlaps, touching seams, zero-length rows, out-of-order inserts, segments sticking out of the window, and
one long back-fill segment that starts far before the window."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from heldar.coverage import _clipped
from heldar.ids import new_id
from heldar.store.database import create_pool
from heldar.store.recording_reads import window_coverage

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_sql_union_matches_the_coverage_maths(new_database) -> None:  # type: ignore[no-untyped-def]
    url = new_database()
    rng = random.Random(11)

    async def run() -> None:
        pool = await create_pool(url, max_size=2)
        try:
            await pool.execute("INSERT INTO cameras (id, name, main_stream_url) VALUES ('w', 'w', 'rtsp://h/x')")
            spans = []
            t = T0
            for _ in range(400):
                t += timedelta(seconds=rng.choice([0, 0, 0.5, 1, 2, 3, 7]) - rng.choice([0, 0, 0, 1]))
                length = timedelta(seconds=rng.choice([0, 1, 2, 2, 2, 4, 60]))
                spans.append((t, t + length))
                t += length
            spans.append((T0 - timedelta(hours=5), T0 + timedelta(seconds=30)))  # a long ANR fill
            rng.shuffle(spans)
            await pool.copy_records_to_table(
                "segments",
                records=[
                    (new_id("seg"), "w", f"f{i}.mp4", s, e, (e - s).total_seconds(), 1)
                    for i, (s, e) in enumerate(spans)
                ],
                columns=["id", "camera_id", "file_name", "start_time", "end_time", "duration_s", "size_bytes"],
            )
            for _ in range(60):
                a = T0 + timedelta(seconds=rng.uniform(-60, 1500))
                b = a + timedelta(seconds=rng.uniform(0, 900))
                cov = await window_coverage(pool, "w", a, b)
                assert cov.covered == _clipped(spans, a, b), (a, b)
                assert cov.segment_count == sum(1 for s, e in spans if e >= a and s <= b)
        finally:
            await pool.close()

    asyncio.run(run())
