"""Recording end to end: simulator RTSP → CameraActor (real ffmpeg) → segments, gaps, status in PostgreSQL.

One simulator, one database and one supervisor for the module; each scenario uses its own camera so
they run side by side and the module stays short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import pytest
import ray

from heldar.coverage import merge_ranges
from heldar.media.probe import probe_segment
from heldar.media.segment_names import segment_path
from tests.integration.recorder_env import add_camera as add_any_camera
from tests.integration.recorder_env import db, recorder_env, wait_for

pytestmark = pytest.mark.integration

SEGMENT_S = 2


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from recorder_env(new_database(), f"{ray_session}-rec", tmp_path_factory.mktemp("rec"))


def add_camera(env: dict[str, Any], camera_id: str, url: str) -> None:
    add_any_camera(env, camera_id, url, segment_seconds=SEGMENT_S)


def actor_health(env: dict[str, Any], camera_id: str) -> dict[str, Any] | None:
    """The camera actor's health report, or None while it is missing, starting or dead."""
    try:
        handle = ray.get_actor(f"camera:{camera_id}", namespace=env["settings"].ray_namespace)
        return ray.get(handle.health.remote(), timeout=5)  # type: ignore[no-any-return]
    except Exception:
        return None


def recording_in_new_actor(env: dict[str, Any], camera_id: str, old_pid: int) -> bool:
    h = actor_health(env, camera_id)
    return h is not None and h["actor_pid"] != old_pid and h["state"] == "recording"


def status(env: dict[str, Any], camera_id: str) -> dict[str, Any]:
    return db(env, "SELECT * FROM camera_status WHERE camera_id = $1", camera_id)[0]


def segments(env: dict[str, Any], camera_id: str) -> list[dict[str, Any]]:
    return db(env, "SELECT * FROM segments WHERE camera_id = $1 ORDER BY start_time", camera_id)


def gaps(env: dict[str, Any], camera_id: str) -> list[dict[str, Any]]:
    return db(env, "SELECT * FROM recording_gaps WHERE camera_id = $1 ORDER BY gap_start", camera_id)


def test_records_indexes_and_timeline_is_continuous(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("steady")
    add_camera(env, "steady", sim.url("steady"))
    wait_for(lambda: len(segments(env, "steady")) >= 5, 40, "five indexed segments")
    rows = segments(env, "steady")
    ranges = merge_ranges([(r["start_time"], r["end_time"]) for r in rows], join_seam_s=2.0)
    assert len(ranges) == 1, ranges
    assert ranges[0].seconds >= 8
    for row in rows:
        assert row["codec"] == "h264" and (row["width"], row["height"]) == (640, 360)
        assert 1.0 <= row["duration_s"] <= SEGMENT_S + 1.5
        path = segment_path(env["settings"].recordings_root / "steady", row["file_name"])
        probe = probe_segment(path)
        assert probe is not None and abs(probe.duration_s - row["duration_s"]) < 0.2
    st = status(env, "steady")
    assert st["state"] == "recording" and st["segments_written"] >= 5 and st["last_error"] is None
    assert st["bitrate_kbps"] and st["fps_observed"]
    assert gaps(env, "steady") == []


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_outage_becomes_exactly_one_gap_matching_ground_truth(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("flaky")
    add_camera(env, "flaky", sim.url("flaky"))
    wait_for(lambda: len(segments(env, "flaky")) >= 2, 40, "flaky to record")
    sim.set_fault("flaky", "down")
    wait_for(lambda: status(env, "flaky")["state"] == "offline", 15, "state offline during the outage")
    offline = status(env, "flaky")
    assert offline["last_error_code"] and offline["last_error"]
    time.sleep(max(0.0, 8 - 2))
    sim.set_fault("flaky", "resume")
    rows = wait_for(lambda: gaps(env, "flaky"), 30, "a recording gap row")
    time.sleep(3)
    rows = gaps(env, "flaky")
    assert len(rows) == 1, rows
    gap = rows[0]
    truth = sim.truth("flaky")
    assert len(truth) == 2, truth
    true_start, true_end = truth[0][1], truth[1][0]
    assert true_start is not None
    assert abs((_aware(gap["gap_start"]) - true_start).total_seconds()) <= 2.0, (gap, truth)
    assert abs((_aware(gap["gap_end"]) - true_end).total_seconds()) <= 2.0, (gap, truth)
    assert gap["fill_state"] == "pending" and gap["cause"]
    events = db(env, "SELECT event_type, payload FROM events WHERE camera_id = 'flaky' ORDER BY timestamp")
    kinds = [e["event_type"] for e in events]
    assert "camera_offline" in kinds and "recording_gap" in kinds
    resumed_after = _aware(gap["gap_end"])
    wait_for(lambda: status(env, "flaky")["state"] == "recording", 15, "recording to resume")
    assert any(_aware(r["start_time"]) >= resumed_after for r in segments(env, "flaky"))


def test_stall_is_detected_restarted_and_recorded_as_gap(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("frozen")
    add_camera(env, "frozen", sim.url("frozen"))
    wait_for(lambda: len(segments(env, "frozen")) >= 2, 40, "frozen to record")
    runs_before = ray.get(ray.get_actor("camera:frozen", namespace=env["settings"].ray_namespace).health.remote())
    stalled_at = time.monotonic()
    sim.set_fault("frozen", "stall")
    wait_for(lambda: status(env, "frozen")["state"] == "offline", 15, "the stall to be noticed")
    detected_after = time.monotonic() - stalled_at
    assert detected_after <= 10.0, detected_after
    st = status(env, "frozen")
    assert st["last_error_code"] in ("stall", "timeout"), st
    time.sleep(2)
    sim.set_fault("frozen", "resume")
    wait_for(lambda: gaps(env, "frozen"), 30, "the stall gap")
    handle = ray.get_actor("camera:frozen", namespace=env["settings"].ray_namespace)
    after = ray.get(handle.health.remote())
    assert after["runs"] > runs_before["runs"]  # ffmpeg was restarted
    wait_for(lambda: status(env, "frozen")["state"] == "recording", 20, "recording after the stall")


def _ffmpeg_children(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "ffmpeg" in p.name()]
    except psutil.NoSuchProcess:
        return []


def test_sigkilled_actor_is_restarted_without_orphans_or_duplicates(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("victim")
    add_camera(env, "victim", sim.url("victim"))
    wait_for(lambda: len(segments(env, "victim")) >= 2, 40, "victim to record")
    namespace = env["settings"].ray_namespace
    report = ray.get(ray.get_actor("camera:victim", namespace=namespace).health.remote())
    actor_pid = report["actor_pid"]
    ffmpegs = wait_for(lambda: _ffmpeg_children(actor_pid), 10, "the actor's ffmpeg")
    os.kill(actor_pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(ffmpegs, timeout=1.0)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # zombies are dead
    assert not alive, "ffmpeg outlived its actor"

    wait_for(lambda: recording_in_new_actor(env, "victim", actor_pid), 30, "a new victim actor recording")
    count_before = len(segments(env, "victim"))
    wait_for(lambda: len(segments(env, "victim")) > count_before + 1, 20, "new segments after the restart")
    rows = segments(env, "victim")
    names = [r["file_name"] for r in rows]
    assert len(names) == len(set(names))
    st = status(env, "victim")
    assert st["restart_count"] >= 1 and st["restarts_by_cause"].get("died", 0) >= 1


@pytest.mark.parametrize(
    ("camera_id", "make_url", "codes"),
    [
        (
            "wrongpw",
            lambda sim: sim.url("locked", with_credentials=False).replace("rtsp://", "rtsp://admin:nope@"),
            {"unauthorized"},
        ),
        ("nohost", lambda sim: "rtsp://127.0.0.1:9/none", {"refused", "unreachable", "timeout"}),
        ("badpath", lambda sim: f"rtsp://127.0.0.1:{sim.port}/no-such-camera", {"not_found"}),
    ],
)
def test_broken_cameras_show_error_with_cause_while_others_record(env, sim, camera_id, make_url, codes) -> None:  # type: ignore[no-untyped-def]
    if camera_id == "wrongpw":
        sim.add_camera("locked", username="admin", password="right-password")
    add_camera(env, camera_id, make_url(sim))
    st = wait_for(
        lambda: (s := status(env, camera_id))["state"] == "error" and s["last_error"] and s, 30, f"{camera_id} error"
    )
    assert st["last_error_code"] in codes, st
    assert "nope" not in st["last_error"]
    events = db(env, "SELECT payload FROM events WHERE camera_id = $1 AND event_type = 'recorder_error'", camera_id)
    assert events and events[0]["payload"]["cause"] in codes
    # the healthy camera kept recording all along
    newest = _aware(segments(env, "steady")[-1]["end_time"])
    assert datetime.now(UTC) - newest < timedelta(seconds=SEGMENT_S + 8)


def test_recorders_stay_within_the_connection_budget(env) -> None:  # type: ignore[no-untyped-def]
    """Camera actors hold no connections: all of them write through the supervisor's small pool."""
    cameras = db(env, "SELECT count(*) AS n FROM cameras")[0]["n"]
    assert cameras >= 5
    rows = db(
        env,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert rows[0]["n"] <= env["settings"].db_actor_connections, rows


def test_hung_actor_is_killed_and_restarted(env, sim) -> None:  # type: ignore[no-untyped-def]
    """A camera actor that stops answering (SIGSTOP) fails its health check and is replaced."""
    sim.add_camera("sleeper")
    add_camera(env, "sleeper", sim.url("sleeper"))
    wait_for(lambda: len(segments(env, "sleeper")) >= 1, 40, "sleeper to record")
    namespace = env["settings"].ray_namespace
    actor_pid = ray.get(ray.get_actor("camera:sleeper", namespace=namespace).health.remote())["actor_pid"]
    os.kill(actor_pid, signal.SIGSTOP)
    try:
        wait_for(lambda: status(env, "sleeper")["restarts_by_cause"].get("hung", 0) >= 1, 30, "a hung restart")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(actor_pid, signal.SIGCONT)

    wait_for(lambda: recording_in_new_actor(env, "sleeper", actor_pid), 40, "a new sleeper actor recording")
    assert not psutil.pid_exists(actor_pid) or psutil.Process(actor_pid).status() == psutil.STATUS_ZOMBIE


def test_config_change_reloads_and_delete_stops_the_recorder(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("edited")
    add_camera(env, "edited", sim.url("edited"))
    wait_for(lambda: len(segments(env, "edited")) >= 1, 40, "edited to record")
    namespace = env["settings"].ray_namespace
    first = ray.get(ray.get_actor("camera:edited", namespace=namespace).health.remote())
    db(env, "UPDATE cameras SET segment_seconds = 4, updated_at = now() WHERE id = 'edited'")
    ray.get(env["supervisor"].reconcile.remote("edited"))

    def reloaded() -> dict[str, Any] | None:
        h = actor_health(env, "edited")
        return h if h and h["version"] != first["version"] and h["state"] == "recording" else None

    second = wait_for(reloaded, 40, "the reloaded recorder")
    assert second["actor_pid"] != first["actor_pid"]
    ffmpegs = _ffmpeg_children(second["actor_pid"])
    db(env, "DELETE FROM cameras WHERE id = 'edited'")
    ray.get(env["supervisor"].reconcile.remote("edited"))

    def gone() -> bool:
        try:
            ray.get_actor("camera:edited", namespace=namespace)
        except ValueError:
            return True
        return False

    wait_for(gone, 30, "the actor to be removed")
    _, alive = psutil.wait_procs(ffmpegs, timeout=5)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_crash_loop_shows_as_error_with_its_cause(env, sim) -> None:  # type: ignore[no-untyped-def]
    """Five deaths in a row within two minutes: state ``error``, code ``crash_loop``, restarts counted."""
    sim.add_camera("crashy")
    add_camera(env, "crashy", sim.url("crashy"))

    def live_pid(exclude: set[int]) -> int | None:
        h = actor_health(env, "crashy")
        return h["actor_pid"] if h and h["actor_pid"] not in exclude else None

    killed: set[int] = set()
    for _ in range(5):
        pid = wait_for(lambda: live_pid(killed), 40, "a crashy actor to kill")
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
    st = wait_for(lambda: (s := status(env, "crashy"))["last_error_code"] == "crash_loop" and s, 15, "crash loop")
    assert st["state"] == "error" and "crash loop" in st["last_error"]
    # each death counts once, as "died" (watch call failed) or "start_failed" (killed while starting)
    assert st["restart_count"] >= 5 and sum(st["restarts_by_cause"].values()) == st["restart_count"]
    assert set(st["restarts_by_cause"]) <= {"died", "start_failed"}


def test_event_mode_keeps_pre_and_post_roll_and_prunes_the_rest(env, sim) -> None:  # type: ignore[no-untyped-def]
    """An event-mode camera records into a short buffer; a trigger keeps [t - pre_roll, t + post_roll]."""
    import asyncio

    from heldar.store import event_recording
    from heldar.store.database import create_pool

    sim.add_camera("evcam")
    add_any_camera(env, "evcam", sim.url("evcam"), segment_seconds=SEGMENT_S, record_mode="event",
                   pre_roll_seconds=4, post_roll_seconds=4)  # fmt: skip
    wait_for(lambda: len(segments(env, "evcam")) >= 4, 40, "buffered event-mode segments")
    assert not any(r["kept"] for r in segments(env, "evcam"))

    t0 = datetime.now(UTC)

    async def trigger() -> dict[str, Any]:
        pool = await create_pool(env["url"], max_size=1)
        try:
            return await event_recording.trigger(pool, "evcam", t0, "zone_enter:test")
        finally:
            await pool.close()

    window = asyncio.run(trigger())
    assert window["pre_roll_segments_kept"] >= 1  # pre-roll came from segments already on disk
    after = window["window_end"] + timedelta(seconds=SEGMENT_S * 2)
    wait_for(lambda: any(r["start_time"] > after for r in segments(env, "evcam")), 30, "footage past the window")
    rows = segments(env, "evcam")
    kept = [r for r in rows if r["kept"]]
    assert kept and all(r["end_time"] >= window["window_start"] and r["start_time"] <= window["window_end"]
                        for r in kept)  # fmt: skip
    assert any(r["start_time"] < t0 for r in kept) and any(r["end_time"] > t0 for r in kept)  # pre- and post-roll
    pruned = ray.get(env["supervisor"].prune_event_footage.remote(datetime.now(UTC) + timedelta(minutes=5)))
    assert pruned >= 1
    left = segments(env, "evcam")
    assert left and all(r["kept"] for r in left)
    root = env["settings"].recordings_root / "evcam"
    assert all(segment_path(root, r["file_name"]).exists() for r in left)
    removed = {r["file_name"] for r in rows} - {r["file_name"] for r in left}
    assert removed and not any(segment_path(root, name).exists() for name in removed)
    assert gaps(env, "evcam") == []
    assert db(env, "SELECT 1 FROM events WHERE camera_id = 'evcam' AND event_type = 'recording_triggered'")
