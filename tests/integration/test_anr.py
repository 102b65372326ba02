"""ANR end to end: an outage's gap is back-filled from the simulator's kept footage (real ffmpeg)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
import ray

from heldar.coverage import coverage_gaps
from heldar.fakecam import FakeCamSimThread
from heldar.media.probe import probe_segment
from heldar.store import gaps as gap_store
from heldar.store.database import create_pool
from tests.integration.recorder_env import add_camera as add_any_camera
from tests.integration.recorder_env import db, recorder_env, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from recorder_env(
        new_database(), f"{ray_session}-anr", tmp_path_factory.mktemp("anr"),
        anr_enabled=True, anr_interval_s=2, anr_max_attempts=2, anr_max_concurrent=1,
    )  # fmt: skip


q = db


def add_camera(env: dict[str, Any], sim: FakeCamSimThread, name: str) -> None:
    sim.add_camera(name)
    add_any_camera(env, name, sim.url(name), segment_seconds=2, anr_enabled=True,
                   anr_replay_url_template=sim.replay_url_template(name))  # fmt: skip


def outage(env: dict[str, Any], sim: FakeCamSimThread, name: str, seconds: float) -> dict[str, Any]:
    wait_for(lambda: len(q(env, "SELECT 1 FROM segments WHERE camera_id = $1", name)) >= 2, 40, f"{name} recording")
    sim.set_fault(name, "down")
    time.sleep(seconds)
    sim.set_fault(name, "resume")
    rows = wait_for(lambda: q(env, "SELECT * FROM recording_gaps WHERE camera_id = $1", name), 30, "a gap")
    return rows[0]


def test_outage_gap_is_filled_and_coverage_is_whole(env, sim) -> None:  # type: ignore[no-untyped-def]
    add_camera(env, sim, "sdcard")
    gap = outage(env, sim, "sdcard", 10)
    assert gap["gap_seconds"] >= 7
    filled = wait_for(
        lambda: (
            (r := q(env, "SELECT * FROM recording_gaps WHERE id = $1", gap["id"])[0])["fill_state"] == "filled" and r
        ),
        60,
        "the gap to be filled",
    )
    assert filled["filled_at"] is not None and filled["fill_attempts"] == 1 and filled["last_error"] is None
    backfill = wait_for(
        lambda: q(env, "SELECT * FROM segments WHERE camera_id = 'sdcard' AND source = 'backfill'"), 20,
        "the back-filled segment to be indexed",
    )[0]  # fmt: skip
    path = env["settings"].recordings_root / "sdcard" / backfill["file_name"]
    probe = probe_segment(path)
    assert probe is not None and probe.codec == "h264" and probe.duration_s >= 0.8 * gap["gap_seconds"]
    assert not list(path.parent.glob("*.part"))
    spans = [(r["start_time"], r["end_time"]) for r in q(env, "SELECT * FROM segments WHERE camera_id = 'sdcard'")]
    window = (gap["gap_start"] - timedelta(seconds=3), gap["gap_end"] + timedelta(seconds=3))
    holes = coverage_gaps(spans, *window, min_gap_s=2.0)
    assert holes == [], holes
    events = [e["event_type"] for e in q(env, "SELECT event_type FROM events WHERE camera_id = 'sdcard'")]
    assert "recording_gap_filled" in events
    ledger = q(env, "SELECT * FROM anr_attempts WHERE gap_id = $1", gap["id"])
    assert [a["outcome"] for a in ledger] == ["filled"] and ledger[0]["seconds_recovered"] > 0


def test_unreachable_replay_fails_then_retry_fills(env, sim) -> None:  # type: ignore[no-untyped-def]
    add_camera(env, sim, "nocard")
    sim.set_replay_enabled("nocard", False)
    gap = outage(env, sim, "nocard", 6)
    failed = wait_for(
        lambda: (
            (r := q(env, "SELECT * FROM recording_gaps WHERE id = $1", gap["id"])[0])["fill_state"] == "failed" and r
        ),
        60,
        "the gap to fail",
    )
    assert failed["fill_attempts"] == 2 and failed["last_error"] and failed["last_attempt_at"]
    assert "recording_gap_failed" in [
        e["event_type"] for e in q(env, "SELECT event_type FROM events WHERE camera_id = 'nocard'")
    ]
    sim.set_replay_enabled("nocard", True)

    async def retry() -> dict[str, Any]:
        pool = await create_pool(env["url"], max_size=1)
        try:
            return await gap_store.retry_gap(pool, "nocard", gap["id"])
        finally:
            await pool.close()

    reset = asyncio.run(retry())
    assert reset["fill_state"] == "pending" and reset["fill_attempts"] == 0 and reset["last_attempt_at"] is None
    wait_for(
        lambda: q(env, "SELECT fill_state FROM recording_gaps WHERE id = $1", gap["id"])[0]["fill_state"] == "filled",
        60,
        "the retried gap to be filled",
    )
    status = ray.get(env["supervisor"].anr_status.remote())
    assert status["peak"] <= env["settings"].anr_max_concurrent
