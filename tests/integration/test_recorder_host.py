"""Recorder hosts (HELDAR_CAMERAS_PER_RECORDER_HOST > 1): several cameras in one actor process, each still its own
supervised unit. Real Ray, ffmpeg, PostgreSQL and the simulator.

What a neighbour must never see: a camera in the same host losing its ffmpeg, its recorder crashing or being
stopped leaves the others' ffmpeg (same pid, same run count) recording; health and status stay per camera; a dead
host brings each of its cameras back in a new host.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from typing import Any

import pytest
import ray

from tests.integration.recorder_env import add_camera as add_any_camera
from tests.integration.recorder_env import db, recorder_env, wait_for

pytestmark = pytest.mark.integration

SEGMENT_S = 2
CAMS = ["h-a", "h-b", "h-c"]


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from recorder_env(
        new_database(), f"{ray_session}-host", tmp_path_factory.mktemp("host"), cameras_per_recorder_host=3
    )


def health(env: dict[str, Any], camera_id: str) -> dict[str, Any] | None:
    """A camera's own health report, through the supervisor (a hosted camera has no actor name of its own)."""
    try:
        return ray.get(env["supervisor"].camera_health.remote(camera_id), timeout=10)  # type: ignore[no-any-return]
    except Exception:
        return None


def recording(env: dict[str, Any], camera_id: str) -> dict[str, Any] | None:
    h = health(env, camera_id)
    return h if h is not None and h["state"] == "recording" and h["pid"] else None


def segment_count(env: dict[str, Any], camera_id: str) -> int:
    return int(db(env, "SELECT count(*) AS n FROM segments WHERE camera_id = $1", camera_id)[0]["n"])


def units(env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["unit"]: u for u in ray.get(env["supervisor"].units_status.remote(), timeout=10)}


def neighbours_untouched(env: dict[str, Any], before: dict[str, dict[str, Any]], cams: list[str]) -> None:
    """The same ffmpeg, the same run, still recording, still indexing."""
    counts = {cid: segment_count(env, cid) for cid in cams}
    for cid in cams:
        wait_for(lambda cid=cid: segment_count(env, cid) >= counts[cid] + 1, 20, f"{cid} to go on indexing")
        now = recording(env, cid)
        assert now is not None, cid
        assert (now["pid"], now["runs"], now["actor_pid"]) == (
            before[cid]["pid"], before[cid]["runs"], before[cid]["actor_pid"],
        ), cid  # fmt: skip


def test_cameras_share_a_host_and_fail_alone(env: dict[str, Any], sim: Any) -> None:
    for cid in CAMS:
        sim.add_camera(cid)
        add_any_camera(env, cid, sim.url(cid), segment_seconds=SEGMENT_S)
    before = {cid: wait_for(lambda cid=cid: recording(env, cid), 40, f"{cid} to record") for cid in CAMS}
    # one process, three ffmpeg, three reports of their own, one named host
    assert len({h["actor_pid"] for h in before.values()}) == 1, before
    assert len({h["pid"] for h in before.values()}) == 3
    assert {h["camera_id"] for h in before.values()} == set(CAMS)
    assert {h["recorder_host"] for h in before.values()} == {"recorder-host:0"}
    with pytest.raises(ValueError):
        ray.get_actor("camera:h-a", namespace=env["settings"].ray_namespace)  # no camera actor in this mode
    host = ray.get_actor("recorder-host:0", namespace=env["settings"].ray_namespace)
    assert "h-a" in repr(ray.get(host.host_health.remote(), timeout=10)["cameras"])
    # one health round asks the host about its three cameras in one call, not three
    calls = ray.get(host.host_health.remote(), timeout=10)["health_calls"]
    assert set(ray.get(env["supervisor"].check_health.remote(), timeout=30).values()) == {"ok"}
    host_now = ray.get(host.host_health.remote(), timeout=10)
    assert host_now["largest_health_batch"] == 3 and host_now["health_calls"] > calls, host_now
    for cid in CAMS:
        wait_for(lambda cid=cid: segment_count(env, cid) >= 2, 30, f"{cid} to index")
    rows = db(env, "SELECT camera_id, state FROM camera_status WHERE camera_id = ANY($1)", CAMS)
    assert {r["camera_id"]: r["state"] for r in rows} == dict.fromkeys(CAMS, "recording")

    # 1. h-a's ffmpeg is SIGKILLed: h-a reconnects with a new ffmpeg in the same process; b and c never notice
    os.kill(before["h-a"]["pid"], signal.SIGKILL)
    wait_for(lambda: (h := recording(env, "h-a")) and h["pid"] != before["h-a"]["pid"], 20, "h-a's new ffmpeg")
    neighbours_untouched(env, before, ["h-b", "h-c"])

    # 2. h-b's recorder crashes (its task dies inside the host): the supervisor restarts h-b alone, in the host
    def crash(self: Any) -> None:  # runs in the host; the recorder task lives on its event loop
        task = self.cameras["h-b"][1].task
        task.get_loop().call_soon_threadsafe(task.cancel)

    ray.get(host.__ray_call__.remote(crash), timeout=10)
    wait_for(lambda: units(env)["camera:h-b"]["restarts"] >= 1, 20, "h-b's unit to restart")
    after_b = wait_for(lambda: (h := recording(env, "h-b")) and h["pid"] != before["h-b"]["pid"] and h, 30,
                       "h-b recording again")  # fmt: skip
    assert after_b["actor_pid"] == before["h-b"]["actor_pid"]  # back in the same host
    neighbours_untouched(env, before, ["h-c"])
    assert units(env)["camera:h-c"]["restarts"] == 0

    # 3. h-c is disabled: it stops cleanly (offline), h-a and h-b go on, the host stays
    now = {cid: recording(env, cid) for cid in ("h-a", "h-b")}
    db(env, "UPDATE cameras SET record_enabled = false, updated_at = now() WHERE id = 'h-c'")
    ray.get(env["supervisor"].reconcile.remote("h-c"), timeout=30)
    wait_for(lambda: db(env, "SELECT state FROM camera_status WHERE camera_id = 'h-c'")[0]["state"] == "offline",
             20, "h-c offline")  # fmt: skip
    assert health(env, "h-c") is None
    neighbours_untouched(env, now, ["h-a", "h-b"])  # type: ignore[arg-type]
    assert "h-c" not in ray.get(host.host_health.remote(), timeout=10)["cameras"]


def test_a_dead_host_brings_each_camera_back(env: dict[str, Any]) -> None:
    before = {cid: recording(env, cid) for cid in ("h-a", "h-b")}
    assert all(before.values()), before
    old_pid = before["h-a"]["actor_pid"]  # type: ignore[index]
    os.kill(old_pid, signal.SIGKILL)
    for cid in ("h-a", "h-b"):
        wait_for(lambda cid=cid: (h := recording(env, cid)) and h["actor_pid"] != old_pid, 90, f"{cid} in a new host")
    after = {cid: recording(env, cid) for cid in ("h-a", "h-b")}
    assert len({h["actor_pid"] for h in after.values()}) == 1  # type: ignore[union-attr]
    restarts = units(env)
    assert restarts["camera:h-a"]["state"] == restarts["camera:h-b"]["state"] == "running"
    for cid in ("h-a", "h-b"):
        count = segment_count(env, cid)
        wait_for(lambda cid=cid, count=count: segment_count(env, cid) >= count + 2, 30, f"{cid} to index again")


def _ping(env: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return ray.get(env["supervisor"].ping.remote(), timeout=5)  # type: ignore[no-any-return]
    except Exception:
        return None


def test_a_restarted_supervisor_adopts_the_hosted_cameras(env: dict[str, Any]) -> None:
    """The supervisor SIGKILLed: Ray restarts it, and it finds the cameras in their host (the host lists them)
    instead of starting them again: the same host process, the same ffmpeg, no gap."""
    before = {cid: wait_for(lambda cid=cid: recording(env, cid), 30, f"{cid} recording") for cid in ("h-a", "h-b")}
    ping = _ping(env)
    assert ping is not None and ping["role"] == "active", ping
    killed_at = datetime.now(UTC)
    os.kill(int(ping["instance"].rsplit(":", 1)[1]), signal.SIGKILL)
    wait_for(lambda: (p := _ping(env)) and p["role"] == "active" and p["instance"] != ping["instance"]
             and all(p["loops"].values()), 90, "the restarted supervisor to supervise")  # fmt: skip
    wait_for(lambda: {u["unit"]: u["state"] for u in ray.get(env["supervisor"].units_status.remote(), timeout=10)}
             .get("camera:h-b") == "running", 30, "the units rebuilt")  # fmt: skip
    for cid in ("h-a", "h-b"):
        now = wait_for(lambda cid=cid: recording(env, cid), 30, f"{cid} answering the new supervisor")
        assert (now["actor_pid"], now["pid"], now["runs"]) == (
            before[cid]["actor_pid"], before[cid]["pid"], before[cid]["runs"]), cid  # fmt: skip
        count = segment_count(env, cid)
        wait_for(lambda cid=cid, count=count: segment_count(env, cid) >= count + 1, 30, f"{cid} to go on indexing")
    gaps = db(env, "SELECT camera_id, cause FROM recording_gaps WHERE camera_id = ANY($1) AND gap_end > $2",
              ["h-a", "h-b"], killed_at)  # fmt: skip
    assert gaps == [], gaps
