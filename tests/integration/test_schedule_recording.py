"""A scheduled camera records for real (simulator RTSP → supervisor → CameraActor → ffmpeg) only around its
window, is never restarted inside it, shows ``disabled`` outside it, and ``/gaps`` reports no hole outside
it. The supervisor is left to its own 10 s reconcile loop: nothing here pokes it at the window edges.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import ray
from fastapi.testclient import TestClient

from api.app import create_app
from config import load_settings
from heldar.schedules import START_EARLY_S, parse_clock
from heldar.store import recording as recording_store
from heldar.store import schedules as schedule_store
from heldar.store.database import create_pool
from tests.integration.recorder_env import add_camera, db, recorder_env, wait_for
from tests.integration.schedule_windows import window_body

pytestmark = pytest.mark.integration

SEGMENT_S = 2
RECONCILE_S = 10.0  # actors/supervisor.py RECONCILE_EVERY_S
CAM = "sched"


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    yield from recorder_env(new_database(), f"{ray_session}-sch", tmp_path_factory.mktemp("sch"))


def run(env: dict[str, Any], fn: Any) -> Any:
    async def go() -> Any:
        pool = await create_pool(env["url"], max_size=2)
        try:
            return await fn(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


def add_window(env: dict[str, Any], opens: datetime, closes: datetime) -> None:
    body = window_body(opens, closes)
    fields = {**body, "start_s": parse_clock(body["time_start"]), "end_s": parse_clock(body["time_end"], end=True)}
    run(env, lambda pool: schedule_store.create_schedule(pool, CAM, fields))


def shown_state(env: dict[str, Any]) -> str:
    return run(env, lambda pool: recording_store.get_status(pool, CAM))["state"]  # type: ignore[no-any-return]


def segments(env: dict[str, Any]) -> list[dict[str, Any]]:
    return db(env, "SELECT start_time, end_time FROM segments WHERE camera_id = $1 ORDER BY start_time", CAM)


def actor_pid(env: dict[str, Any]) -> int | None:
    try:
        handle = ray.get_actor(f"camera:{CAM}", namespace=env["settings"].ray_namespace)
        return ray.get(handle.health.remote(), timeout=5)["actor_pid"]  # type: ignore[no-any-return]
    except Exception:
        return None


def test_scheduled_camera_records_inside_its_window_only(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera(CAM)
    t0 = datetime.now(UTC).replace(microsecond=0)
    # The window opens beyond the start-early lead, so the recorder must first stay off.
    opens = t0 + timedelta(seconds=START_EARLY_S + 8)
    closes = opens + timedelta(seconds=18)
    add_camera(env, CAM, sim.url(CAM), segment_seconds=SEGMENT_S, record_mode="scheduled")
    add_window(env, opens, closes)
    ray.get(env["supervisor"].reconcile.remote(CAM))

    # Before the lead: no recorder, shown disabled.
    assert CAM not in ray.get(env["supervisor"].running_cameras.remote())
    assert shown_state(env) == "disabled"

    # The 10 s reconcile loop starts it within the lead; footage begins before the window opens.
    first = wait_for(lambda: segments(env), START_EARLY_S + 8 + RECONCILE_S + 10, "the first scheduled segment")[0]
    started_wall = datetime.now(UTC)
    assert first["start_time"] >= opens - timedelta(seconds=START_EARLY_S + 1), (first, opens)
    lead_s = (opens - first["start_time"]).total_seconds()

    # Inside the window: recording, and the same actor throughout (an unrelated schedule edit included).
    wait_for(lambda: datetime.now(UTC) > opens + timedelta(seconds=1), 60, "the window to open")
    wait_for(lambda: shown_state(env) == "recording", 10, "state recording inside the window")
    pid = actor_pid(env)
    assert pid is not None
    far = t0 + timedelta(hours=6)
    add_window(env, far, far + timedelta(minutes=5))
    ray.get(env["supervisor"].reconcile.remote(CAM))
    pids = set()
    while datetime.now(UTC) < closes - timedelta(seconds=1):
        pids.add(actor_pid(env))
        time.sleep(1)
    pids.discard(None)  # a health call that timed out under load; a restart would show a new pid
    assert pids == {pid}, pids

    # After the window: the loop stops it within a reconcile period; shown disabled, and nothing more on disk.
    stopped = wait_for(lambda: CAM not in ray.get(env["supervisor"].running_cameras.remote()) and datetime.now(UTC),
                       RECONCILE_S + 10, "the recorder to stop after the window")  # fmt: skip
    assert shown_state(env) == "disabled"
    time.sleep(SEGMENT_S + 3)  # let the last segment be indexed (stop flushes it)
    rows = segments(env)
    last_end = max(r["end_time"] for r in rows)
    assert last_end <= closes + timedelta(seconds=RECONCILE_S + SEGMENT_S + 6), (last_end, closes)
    time.sleep(SEGMENT_S + 1)
    assert len(segments(env)) == len(rows)  # no recorder is writing any more

    # /gaps over the whole time since before the camera existed: no hole outside the window.
    settings = load_settings(data_dir=env["settings"].data_dir, auth_enabled=False)
    with TestClient(create_app(settings, env["url"])) as client:
        query = {"from": (t0 - timedelta(minutes=5)).isoformat(), "to": datetime.now(UTC).isoformat()}
        gaps = client.get(f"/api/v1/cameras/{CAM}/gaps", params=query).json()
        timeline = client.get(f"/api/v1/cameras/{CAM}/timeline", params=query).json()
    for gap in gaps["gaps"]:
        start, end = datetime.fromisoformat(gap["start"]), datetime.fromisoformat(gap["end"])
        assert opens <= start and end <= closes, (gap, opens, closes)
    assert gaps["gap_count"] == 0, gaps  # the start-early lead put the whole window on disk
    (only,) = timeline["ranges"]  # one continuous recording, from before the window to after it
    assert datetime.fromisoformat(only["start"]) <= opens and datetime.fromisoformat(only["end"]) >= closes
    print(f"\nscheduled recording: first footage {lead_s:.1f}s before the window opened"
          f" (recorder seen {(started_wall - t0).total_seconds():.1f}s after t0); stopped"
          f" {(stopped - closes).total_seconds():.1f}s after it closed; last footage"
          f" {(last_end - closes).total_seconds():.1f}s after")  # fmt: skip
