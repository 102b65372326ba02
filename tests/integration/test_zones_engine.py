"""The zone engine against real PostgreSQL: rows written, replay/duplicates/out-of-order are no-ops,
a restart resumes open visits without a second enter, occupancy, the covering segment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from heldar.perception.detections import Detection, DetectionBatch
from heldar.store import zones as zone_store
from heldar.store.database import create_pool
from heldar.zones.engine import ZoneEngine
from heldar.zones.model import ZoneEvent

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SQUARE = [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]]
SCRIPT = [0.1, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.8, 0.9, 0.9]  # out x2, in x6, out x3; 1 s apart


@pytest.fixture(scope="module")
def db_url(new_database) -> str:  # type: ignore[no-untyped-def]
    return str(new_database())


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_url, max_size=4)
    yield p
    await p.close()


def batches(camera: str, xs: list[float], track: str = "t1", start: int = 0) -> list[DetectionBatch]:
    out = []
    for i, x in enumerate(xs, start=start):
        det = Detection("person", 0.9, (x - 0.05, 0.3, 0.1, 0.2), track_id=track)  # bottom-centre (x, 0.5)
        out.append(DetectionBatch(camera, "detect", f"{camera}:{i}", T0 + timedelta(seconds=i), (det,)))
    return out


async def camera_with_zone(pool: asyncpg.Pool, camera: str, **zone: object) -> str:
    await pool.execute("INSERT INTO cameras (id, name) VALUES ($1, $1)", camera)
    fields = {"name": "door", "kind": "region", "polygon": SQUARE, "dwell_seconds": 3.0, "severity": "warning",
              **zone}  # fmt: skip
    row, created = await zone_store.create_zone(pool, camera, fields)
    assert created
    return str(row["id"])


async def zone_rows(pool: asyncpg.Pool, camera: str) -> list[tuple[str, datetime]]:
    rows = await pool.fetch(
        'SELECT event_type, "timestamp" FROM zone_events WHERE camera_id = $1 ORDER BY "timestamp", event_type',
        camera,
    )
    return [(r["event_type"], r["timestamp"]) for r in rows]


async def test_scripted_track_writes_enter_dwell_exit_with_events_and_occupancy(pool: asyncpg.Pool) -> None:
    zone_id = await camera_with_zone(pool, "cam-a")
    seen: list[ZoneEvent] = []

    async def hook(events: object) -> None:
        seen.extend(events)  # type: ignore[arg-type]

    engine = ZoneEngine(pool, hooks=[hook])
    script = batches("cam-a", SCRIPT)
    for b in script[:5]:
        await engine.consume(b)
    occ = await zone_store.occupancy(pool, "cam-a")
    assert [(o["zone_id"], o["count"]) for o in occ] == [(zone_id, 1)]
    for b in script[5:]:
        await engine.consume(b)
    assert [t for t, _ in await zone_rows(pool, "cam-a")] == ["enter", "dwell", "exit"]
    assert [e.event_type for e in seen] == ["enter", "dwell", "exit"]
    logged = await pool.fetch(
        "SELECT event_type, severity, camera_id, payload FROM events WHERE camera_id = 'cam-a' ORDER BY seq"
    )
    assert [r["event_type"] for r in logged] == ["zone_enter", "zone_dwell", "zone_exit"]
    assert {r["severity"] for r in logged} == {"warning"}
    assert logged[1]["payload"]["zone_id"] == zone_id and logged[1]["payload"]["dwell_seconds"] == 3.0
    assert (await zone_store.occupancy(pool, "cam-a"))[0]["count"] == 0
    linked = await pool.fetch("SELECT ze.id FROM zone_events ze JOIN events e ON e.id = ze.event_id")
    assert len(linked) == 3


async def test_duplicates_out_of_order_and_full_replay_add_nothing(pool: asyncpg.Pool) -> None:
    await camera_with_zone(pool, "cam-b")
    script = batches("cam-b", SCRIPT)
    engine = ZoneEngine(pool)
    for i, b in enumerate(script):
        await engine.consume(b)
        await engine.consume(b)  # duplicate
        await engine.consume(script[i // 2])  # late
    expected = await zone_rows(pool, "cam-b")
    assert [t for t, _ in expected] == ["enter", "dwell", "exit"]
    # a restarted engine replaying everything (ingest replays unacknowledged batches) writes nothing new
    restarted = ZoneEngine(pool)
    for b in script:
        await restarted.consume(b)
    assert await zone_rows(pool, "cam-b") == expected
    # even an engine that lost its watermark gives the same events (frame time) and the unique key holds
    await pool.execute("DELETE FROM zone_engine_cursors WHERE camera_id = 'cam-b'")
    amnesiac = ZoneEngine(pool)
    for b in script:
        await amnesiac.consume(b)
    assert await zone_rows(pool, "cam-b") == expected
    assert await pool.fetchval("SELECT count(*) FROM events WHERE camera_id = 'cam-b'") == 3


async def test_restart_mid_visit_resumes_without_a_second_enter(pool: asyncpg.Pool) -> None:
    await camera_with_zone(pool, "cam-c")
    script = batches("cam-c", SCRIPT)
    first = ZoneEngine(pool, watermark_every_s=3600)  # the watermark is saved with the events only
    for b in script[:7]:
        await first.consume(b)
    assert [t for t, _ in await zone_rows(pool, "cam-c")] == ["enter", "dwell"]
    second = ZoneEngine(pool)  # a new process: state comes back from the database
    for b in script[3:]:  # some frames are replayed, then the track walks out
        await second.consume(b)
    assert [t for t, _ in await zone_rows(pool, "cam-c")] == ["enter", "dwell", "exit"]


async def test_unseen_track_gets_a_synthetic_exit_on_its_own_camera(pool: asyncpg.Pool) -> None:
    await camera_with_zone(pool, "cam-d")
    await camera_with_zone(pool, "cam-e")
    engine = ZoneEngine(pool, track_timeout_s=10)
    for b in batches("cam-d", [0.5, 0.5, 0.5]):
        await engine.consume(b)
    for b in batches("cam-e", [0.5, 0.5, 0.5, 0.9], track="other", start=100):  # another camera, much later
        await engine.consume(b)
    assert [t for t, _ in await zone_rows(pool, "cam-d")] == ["enter"]
    await engine.consume(batches("cam-d", [0.1], track="t9", start=60)[0])
    rows = await pool.fetch("SELECT event_type, synthetic, \"timestamp\" FROM zone_events WHERE camera_id = 'cam-d'"
                            " ORDER BY \"timestamp\", event_type")  # fmt: skip
    assert [(r["event_type"], r["synthetic"]) for r in rows] == [("enter", False), ("exit", True)]
    assert rows[1]["timestamp"] == T0 + timedelta(seconds=2)


async def test_line_crossings_both_ways_and_covering_segment(pool: asyncpg.Pool) -> None:
    await camera_with_zone(pool, "cam-f", name="gate", kind="line", polygon=[[0.5, 0.0], [0.5, 1.0]])
    await pool.execute(
        "INSERT INTO segments (id, camera_id, file_name, start_time, end_time, duration_s, size_bytes)"
        " VALUES ('seg_1', 'cam-f', 'a.mp4', $1, $2, 60, 1000)",
        T0,
        T0 + timedelta(seconds=60),
    )
    engine = ZoneEngine(pool)
    for b in batches("cam-f", [0.2, 0.4, 0.6, 0.8, 0.6, 0.3]):
        await engine.consume(b)
    listed = await zone_store.list_zone_events(pool, "cam-f")
    assert [r["event_type"] for r in listed] == ["cross_ba", "cross_ab"]  # newest first
    assert {r["segment_id"] for r in listed} == {"seg_1"}
    assert await zone_store.occupancy(pool, "cam-f") == []  # lines have no occupancy


async def test_zone_changes_are_picked_up_after_invalidate(pool: asyncpg.Pool) -> None:
    zone_id = await camera_with_zone(pool, "cam-g")
    engine = ZoneEngine(pool, zone_refresh_s=3600)
    for b in batches("cam-g", [0.5, 0.5]):
        await engine.consume(b)
    await zone_store.update_zone(pool, zone_id, {"enabled": False})
    engine.invalidate("cam-g")
    for b in batches("cam-g", [0.5, 0.5, 0.9, 0.9], start=2):
        await engine.consume(b)
    assert [t for t, _ in await zone_rows(pool, "cam-g")] == ["enter"]  # no exit from a disabled zone
