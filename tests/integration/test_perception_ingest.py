"""Ingest against real PostgreSQL: bulk write, idempotency per (camera, frame_id), at-least-once fan-out,
replay after a crash between commit and fan-out, bounded retries and counted drops on database errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from heldar.perception.detections import Detection, DetectionBatch
from heldar.perception.ingest import FanOut, Ingestor, kernel_item
from heldar.store import perception as store
from heldar.store.database import create_pool

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


class Recorder:
    def __init__(self, name: str, fail_on: str | None = None) -> None:
        self.name = name
        self.seen: list[tuple[str, str]] = []
        self.fail_on = fail_on

    async def consume(self, batch: DetectionBatch) -> None:
        self.seen.append((batch.camera_id, batch.frame_id))
        if self.fail_on and batch.frame_id.endswith(self.fail_on):
            raise RuntimeError("consumer bug")


def batch(camera: str, n: int, frame: str, at: datetime = T0) -> DetectionBatch:
    dets = tuple(Detection("person", 0.9, (0.1, 0.2, 0.3, 0.4), f"t{i}", {"i": i}) for i in range(n))
    return DetectionBatch(camera, "person", frame, at, dets)


async def _with_pool(url: str, fn: Any) -> Any:
    pool = await create_pool(url, max_size=3)
    try:
        await pool.execute("INSERT INTO cameras (id, name, main_stream_url) VALUES ('c1', 'c1', 'rtsp://h/x'),"
                           " ('c2', 'c2', 'rtsp://h/y') ON CONFLICT DO NOTHING")  # fmt: skip
        return await fn(pool)
    finally:
        await pool.close()


def test_ingest_is_idempotent_per_camera_and_frame(new_database) -> None:  # type: ignore[no-untyped-def]
    url = new_database()

    async def run(pool: Any) -> None:
        a = Recorder("a")
        ingestor = Ingestor(pool, FanOut(pool, [a]))
        ingestor.submit([batch("c1", 3, "f1"), batch("c1", 2, "f2"), batch("c2", 1, "f1"), batch("c1", 3, "f1")])
        await ingestor.flush()
        assert ingestor.rows == 6 and ingestor.frames == 3 and ingestor.duplicates == 1
        ingestor.submit([batch("c1", 3, "f1"), batch("c1", 5, "f3")])  # a repeat after commit
        await ingestor.flush()
        assert ingestor.rows == 11 and ingestor.duplicates == 2
        assert await pool.fetchval("SELECT count(*) FROM detections") == 11
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 4
        row = await pool.fetchrow("SELECT * FROM detections WHERE frame_id = 'k:sampler:f2' LIMIT 1")
        assert row["attributes"]["source"] == "kernel" and row["attributes"]["_prov"] == {"producer": "sampler"}
        assert list(row["bbox"]) == pytest.approx([0.1, 0.2, 0.3, 0.4]) and row["timestamp"] == T0
        assert sorted(a.seen) == sorted([("c1", "k:sampler:f1"), ("c1", "k:sampler:f2"), ("c2", "k:sampler:f1"),
                                         ("c1", "k:sampler:f3")])  # fmt: skip
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL") == 0
        rows = await store.list_detections(pool, "c1", start=None, end=None, label="person", limit=3)
        assert len(rows) == 3

    asyncio.run(_with_pool(url, run))


def test_fanout_at_least_once_and_replay_after_crash(new_database) -> None:  # type: ignore[no-untyped-def]
    url = new_database()

    async def run(pool: Any) -> None:
        # "crash": committed but never fanned out (no consumers ran, outbox row left unfanned)
        items = [kernel_item(batch("c1", 2, f"f{i}", T0 + timedelta(seconds=i))) for i in range(3)]
        await store.ingest(pool, items)
        a, b = Recorder("a"), Recorder("b", fail_on="f1")
        # consumer a had finished f0 before the crash
        await store.finish_fanout(pool, {"a": [("c1", "k:sampler:f0")]}, [])
        fan = FanOut(pool, [a, b])
        assert await fan.replay(older_than_s=0) == 3
        assert a.seen == [("c1", "k:sampler:f1"), ("c1", "k:sampler:f2")]  # f0 was finished: not again
        # b failed on f1: f2 of the same camera is left for the replay too, so b sees its frames in order
        assert [f for _, f in b.seen] == ["k:sampler:f0", "k:sampler:f1"]
        assert fan.failures == {"b": 1}  # a failing consumer does not block the others
        left = await store.unfanned_batches(pool, 0, 10)
        assert [x.frame_id for x in left] == ["k:sampler:f1", "k:sampler:f2"]  # at least once: not marked done
        b.fail_on = None
        assert await fan.replay(older_than_s=0) == 2
        assert [f for _, f in b.seen] == ["k:sampler:f0", "k:sampler:f1", "k:sampler:f1", "k:sampler:f2"]
        assert len(a.seen) == 2  # a finished f1 and f2 the first time: skipped
        assert await store.unfanned_batches(pool, 0, 10) == []
        assert await fan.replay(older_than_s=0) == 0

    asyncio.run(_with_pool(url, run))


def test_database_errors_retry_bounded_and_count_drops(new_database) -> None:  # type: ignore[no-untyped-def]
    """A write that fails goes back to the buffer; after max_attempts it is dropped and counted; the run loop
    survives; the buffer is bounded (oldest dropped, counted)."""
    url = new_database()

    async def run(pool: Any) -> None:
        ingestor = Ingestor(pool, FanOut(pool), max_buffer=5, max_attempts=2, retry_base_s=0.01)
        ingestor.submit([batch("c1", 1, f"b{i}") for i in range(8)])
        assert len(ingestor.buffer) == 5 and ingestor.dropped == {"buffer_full": 3}
        await pool.execute("ALTER TABLE outbox RENAME TO outbox_away")  # the database refuses the write
        loop = asyncio.get_running_loop().create_task(ingestor.run(linger_s=0))
        for _ in range(200):
            if ingestor.dropped.get("db_error"):
                break
            await asyncio.sleep(0.01)
        assert ingestor.dropped.get("db_error") == 5 and ingestor.errors == 2 and not loop.done()
        await pool.execute("ALTER TABLE outbox_away RENAME TO outbox")
        ingestor.submit([batch("c1", 1, "after")])
        for _ in range(200):
            if ingestor.frames:
                break
            await asyncio.sleep(0.01)
        assert ingestor.frames == 1 and not loop.done()  # the loop lived through the errors
        loop.cancel()

    asyncio.run(_with_pool(url, run))


def test_deleted_camera_does_not_sink_the_batch(new_database) -> None:  # type: ignore[no-untyped-def]
    url = new_database()

    async def run(pool: Any) -> None:
        ingestor = Ingestor(pool, FanOut(pool))
        ingestor.submit([batch("c1", 1, "x"), batch("gone", 1, "x")])
        await ingestor.flush()
        assert ingestor.rows == 1 and await pool.fetchval("SELECT count(*) FROM detections") == 1

    asyncio.run(_with_pool(url, run))
