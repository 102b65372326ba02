"""The fault suite: each fault really happens, and afterwards recording has resumed, no closed segment file is
left unindexed, every loss is a gap with a cause, and ``/readyz`` told the truth.

Real Ray, a real PostgreSQL server that can be stopped hard (Debian's binaries), real ffmpeg and the RTSP
simulator. One camera per scenario so they do not disturb each other; the module ends with the failover,
which kills this module's supervisor for good.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray
from fastapi.testclient import TestClient

from actors.handles import ensure_supervisor
from api.app import create_app
from api.supervisor_link import SupervisorLink
from config import load_settings
from heldar.media.segment_names import parse_segment_name
from heldar.store import cameras as camera_store
from heldar.store.database import connect, create_pool
from heldar.store.migrate import migrate
from tests.integration.pg_server import RestartablePostgres, postgres_bin
from tests.integration.recorder_env import add_camera as add_any_camera
from tests.integration.recorder_env import db, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL server binaries (make deps)"),
]

SEGMENT_S = 2


@pytest.fixture(scope="module")
def pg() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres().init()
    server.start()
    yield server
    server.remove()


def _settings(namespace: str, data_dir: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "ray_namespace": namespace, "data_dir": data_dir, "health_interval_s": 2, "health_timeout_s": 5,
        "indexer_interval_s": 1, "rtsp_timeout_s": 4, "supervisor_standby_poll_s": 1, **overrides,
    }  # fmt: skip
    return load_settings(**values)


@pytest.fixture(scope="module")
def env(pg: RestartablePostgres, ray_session: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    async def create() -> None:
        conn = await connect(pg.url())
        try:
            await conn.execute("CREATE DATABASE faults")
        finally:
            await conn.close()
        conn = await connect(pg.url("faults"))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(create())
    url = pg.url("faults")
    settings = _settings(f"{ray_session}-faults", tmp_path_factory.mktemp("faults"))
    supervisor = ensure_supervisor(settings, url)
    env = {"url": url, "settings": settings, "supervisor": supervisor}
    yield env
    for handle in {id(h): h for h in (env["supervisor"], *env.get("more_supervisors", []))}.values():
        try:
            ray.get(handle.shutdown.remote(), timeout=60)
            ray.kill(handle)
        except Exception:
            pass


@pytest.fixture(scope="module")
def client(env: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = load_settings(auth_enabled=False, data_dir=tmp_path_factory.mktemp("faultapi"),
                             ray_namespace=env["settings"].ray_namespace, webhooks_enabled=False)  # fmt: skip
    app = create_app(settings, env["url"], supervisor=SupervisorLink(env["settings"].ray_namespace))
    with TestClient(app) as c:
        yield c


# --- helpers --------------------------------------------------------------------------------------------
def add_camera(env: dict[str, Any], camera_id: str, url: str) -> None:
    add_any_camera(env, camera_id, url, segment_seconds=SEGMENT_S)


def actor(env: dict[str, Any], camera_id: str, namespace: str | None = None) -> Any:
    return ray.get_actor(f"camera:{camera_id}", namespace=namespace or env["settings"].ray_namespace)


def health(env: dict[str, Any], camera_id: str, namespace: str | None = None) -> dict[str, Any] | None:
    try:
        return ray.get(actor(env, camera_id, namespace).health.remote(), timeout=5)  # type: ignore[no-any-return]
    except Exception:
        return None


def segments(env: dict[str, Any], camera_id: str) -> list[dict[str, Any]]:
    return db(env, "SELECT * FROM segments WHERE camera_id = $1 ORDER BY start_time", camera_id)


def gaps(env: dict[str, Any], camera_id: str) -> list[dict[str, Any]]:
    return db(env, "SELECT * FROM recording_gaps WHERE camera_id = $1 ORDER BY gap_start", camera_id)


def closed_files(env: dict[str, Any], camera_id: str) -> set[str]:
    """Segment files on disk that no ffmpeg writes to any more (older than a segment plus a margin)."""
    root = env["settings"].recordings_root / camera_id
    now = time.time()
    found = set()
    for path in root.rglob("*.mp4"):
        if parse_segment_name(path.name) is None:
            continue
        try:
            if now - path.stat().st_mtime > SEGMENT_S + 4:
                found.add(path.name)
        except FileNotFoundError:
            continue
    return found


def unindexed(env: dict[str, Any], camera_id: str) -> set[str]:
    indexed = {Path(r["file_name"]).name for r in segments(env, camera_id)}
    return closed_files(env, camera_id) - indexed


def recording(env: dict[str, Any], camera_id: str, namespace: str | None = None) -> bool:
    h = health(env, camera_id, namespace)
    return h is not None and h["state"] == "recording"


def assert_whole(env: dict[str, Any], camera_id: str) -> None:
    """The fault's aftermath: recording, every closed file indexed, every gap with a cause."""
    wait_for(lambda: recording(env, camera_id), 40, f"{camera_id} to record again")
    count = len(segments(env, camera_id))
    wait_for(lambda: len(segments(env, camera_id)) >= count + 2, 30, f"{camera_id} to index new segments")
    wait_for(lambda: not unindexed(env, camera_id), 30, f"every closed file of {camera_id} to be indexed")
    for gap in gaps(env, camera_id):
        assert gap["cause"], gap


def ffmpeg_pid(env: dict[str, Any], camera_id: str) -> int | None:
    h = health(env, camera_id)
    return None if h is None else h["pid"]


def start_recording(env: dict[str, Any], sim: Any, camera_id: str) -> dict[str, Any]:
    sim.add_camera(camera_id)
    add_camera(env, camera_id, sim.url(camera_id))
    wait_for(lambda: len(segments(env, camera_id)) >= 2, 40, f"{camera_id} to record")
    h = health(env, camera_id)
    assert h is not None
    return h


def supervisor_ping(env: dict[str, Any], handle: Any = None) -> dict[str, Any] | None:
    try:
        return ray.get((handle or env["supervisor"]).ping.remote(), timeout=5)  # type: ignore[no-any-return]
    except Exception:
        return None


def supervising(ping: dict[str, Any] | None) -> bool:
    return bool(ping and ping["role"] == "active" and ping["loops"] and all(ping["loops"].values()))


# --- faults at the camera ---------------------------------------------------------------------------------
def test_camera_drop_and_stall(env, sim, client) -> None:  # type: ignore[no-untyped-def]
    start_recording(env, sim, "f-drop")
    sim.set_fault("f-drop", "down")
    wait_for(lambda: (health(env, "f-drop") or {}).get("state") == "offline", 15, "the drop to be noticed")
    assert client.get("/readyz").status_code == 200  # one camera down is not an unready kernel
    time.sleep(5)
    sim.set_fault("f-drop", "resume")
    assert_whole(env, "f-drop")
    assert len(gaps(env, "f-drop")) == 1

    sim.set_fault("f-drop", "stall")
    wait_for(lambda: (health(env, "f-drop") or {}).get("state") == "offline", 20, "the stall to be noticed")
    sim.set_fault("f-drop", "resume")
    assert_whole(env, "f-drop")
    causes = [g["cause"] for g in gaps(env, "f-drop")]
    assert len(causes) == 2 and all(causes), causes


def test_wrong_password_then_fixed(env, sim) -> None:  # type: ignore[no-untyped-def]
    sim.add_camera("f-auth", "admin", "right-pass")
    add_camera(env, "f-auth", sim.url("f-auth").replace("right-pass", "wrong-pass"))
    wait_for(lambda: (health(env, "f-auth") or {}).get("last_cause") == "unauthorized", 30, "unauthorized")
    wait_for(lambda: db(env, "SELECT state, last_error_code FROM camera_status WHERE camera_id = 'f-auth'")[0]
             == {"state": "error", "last_error_code": "unauthorized"}, 10, "status error/unauthorized")  # fmt: skip
    _update_camera(env, "f-auth", main_stream_url=sim.url("f-auth"))
    assert_whole(env, "f-auth")


def test_ffmpeg_sigkill(env, sim) -> None:  # type: ignore[no-untyped-def]
    before = start_recording(env, sim, "f-ffmpeg")
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: ffmpeg_pid(env, "f-ffmpeg") not in (None, before["pid"]), 20, "a new ffmpeg")
    assert_whole(env, "f-ffmpeg")
    assert health(env, "f-ffmpeg")["actor_pid"] == before["actor_pid"]  # the actor itself was not replaced


def test_camera_actor_sigkill(env, sim) -> None:  # type: ignore[no-untyped-def]
    before = start_recording(env, sim, "f-actor")
    os.kill(before["actor_pid"], signal.SIGKILL)
    wait_for(lambda: (health(env, "f-actor") or {}).get("actor_pid") not in (None, before["actor_pid"]), 30,
             "a new camera actor")  # fmt: skip
    assert_whole(env, "f-actor")
    units = {u["unit"]: u for u in ray.get(env["supervisor"].units_status.remote())}
    assert units["camera:f-actor"]["restarts"] == 1 and units["camera:f-actor"]["state"] == "running"


# --- faults in heldar itself ------------------------------------------------------------------------------
def test_supervisor_sigkill_stops_no_indexing(env, sim, client) -> None:  # type: ignore[no-untyped-def]
    before = start_recording(env, sim, "f-sup")
    ping = supervisor_ping(env)
    assert supervising(ping), ping
    pid = int(ping["instance"].rsplit(":", 1)[1])
    count = len(segments(env, "f-sup"))
    os.kill(pid, signal.SIGKILL)
    # Indexing goes on while the supervisor is down and restarting: the writers are not the supervisor.
    wait_for(lambda: len(segments(env, "f-sup")) >= count + 2, 20, "segments indexed while the supervisor restarts")
    # Ray restarts it and it heals itself: nobody calls start().
    ping = wait_for(lambda: (p := supervisor_ping(env)) and supervising(p) and p["instance"] != ping["instance"] and p,
                    60, "the supervisor to supervise again")  # fmt: skip
    assert ping["db_ok"]
    wait_for(lambda: client.get("/readyz").status_code == 200, 20, "/readyz to be green again")
    after = health(env, "f-sup")
    assert after["actor_pid"] == before["actor_pid"]  # adopted: recording never stopped
    assert_whole(env, "f-sup")
    assert gaps(env, "f-sup") == []
    # and it still supervises: a camera killed now is restarted by the new supervisor
    os.kill(after["actor_pid"], signal.SIGKILL)
    wait_for(lambda: (health(env, "f-sup") or {}).get("actor_pid") not in (None, after["actor_pid"]), 30,
             "the restarted supervisor to replace a killed camera")  # fmt: skip


def _update_camera(env: dict[str, Any], camera_id: str, **changes: Any) -> None:
    async def run() -> None:
        pool = await create_pool(env["url"], max_size=1)
        try:
            camera = await camera_store.get_camera(pool, camera_id)
            await camera_store.update_camera(pool, camera.model_copy(update=changes))
        finally:
            await pool.close()

    asyncio.run(run())
    ray.get(env["supervisor"].reconcile.remote(camera_id))


def test_rename_under_load_cuts_no_gap(env, sim) -> None:  # type: ignore[no-untyped-def]
    before = start_recording(env, sim, "f-rename")
    _update_camera(env, "f-rename", name="Loading dock (north)", retention_hours=48, priority=3)
    time.sleep(2 * SEGMENT_S + 1)
    after = health(env, "f-rename")
    assert (after["actor_pid"], after["pid"]) == (before["actor_pid"], before["pid"])  # same actor, same ffmpeg
    assert after["live_version"] != before["live_version"]  # the new settings reached it
    assert_whole(env, "f-rename")
    assert gaps(env, "f-rename") == []


def test_every_url_changed_at_once(env, sim) -> None:  # type: ignore[no-untyped-def]
    ids = ["f-url-a", "f-url-b", "f-url-c"]
    old = {cid: start_recording(env, sim, cid) for cid in ids}
    for cid in ids:
        sim.add_camera(f"{cid}-new")
    for cid in ids:
        _update_camera(env, cid, main_stream_url=sim.url(f"{cid}-new"))
    for cid in ids:
        wait_for(lambda cid=cid: (h := health(env, cid)) and h["actor_pid"] != old[cid]["actor_pid"]
                 and h["state"] == "recording", 40, f"{cid} to record from its new URL")  # fmt: skip
        wait_for(lambda cid=cid: sim.session_count(f"{cid}-new") >= 1, 10, f"{cid} reading its new path")
    for cid in ids:
        assert_whole(env, cid)
        assert not psutil.pid_exists(old[cid]["actor_pid"]) or psutil.Process(old[cid]["actor_pid"]).status() == (
            psutil.STATUS_ZOMBIE
        )
        status = db(env, "SELECT state FROM camera_status WHERE camera_id = $1", cid)[0]
        assert status["state"] == "recording"  # never left as 'stopped' by the reload
    wait_for(lambda: all(sim.session_count(cid) == 0 for cid in ids), 15, "no recorder left on the old URLs")


def test_postgres_restart(env, sim, pg, client) -> None:  # type: ignore[no-untyped-def]
    start_recording(env, sim, "f-pg")
    pg.stop("immediate")
    outage_started = time.time()
    wait_for(lambda: client.get("/readyz").status_code == 503, 10, "/readyz to say the database is down")
    assert "database" in client.get("/readyz").json()["reason"]
    time.sleep(10)
    # recording went on to disk all along
    root = env["settings"].recordings_root / "f-pg"
    written = [p for p in root.rglob("*.mp4") if p.stat().st_mtime > outage_started + 2]
    assert len(written) >= 3, written
    pg.start()
    wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz to be green once the database is back")
    assert_whole(env, "f-pg")
    assert gaps(env, "f-pg") == []  # nothing was lost, so there is no gap
    assert recording(env, "f-pg")
    assert supervising(wait_for(lambda: (p := supervisor_ping(env)) and supervising(p) and p, 30, "supervisor"))


def _replace_supervisor(env: dict[str, Any], *, clean: bool) -> None:
    """Stop this kernel (cleanly, or as a crash: everything killed) and start a fresh supervisor on the same
    database, as a restarted ``heldar serve`` would."""
    namespace = env["settings"].ray_namespace
    if clean:
        ray.get(env["supervisor"].shutdown.remote(), timeout=90)
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == namespace:
            ray.kill(ray.get_actor(entry["name"], namespace=namespace), no_restart=True)

    def gone() -> bool:
        return all(e["namespace"] != namespace for e in ray.util.list_named_actors(all_namespaces=True))

    wait_for(gone, 20, "this kernel's actors to be gone")
    time.sleep(5)  # heldar is down for a while: more than the gap threshold
    env["supervisor"] = ensure_supervisor(env["settings"], env["url"])


def test_heldar_down_time_is_a_gap_that_says_why(env, sim) -> None:  # type: ignore[no-untyped-def]
    start_recording(env, sim, "f-down")
    _replace_supervisor(env, clean=True)
    wait_for(lambda: any((g["cause"] or "").startswith("heldar_stopped") for g in gaps(env, "f-down")), 60,
             "a heldar_stopped gap")  # fmt: skip
    assert_whole(env, "f-down")
    _replace_supervisor(env, clean=False)
    wait_for(lambda: any((g["cause"] or "").startswith("heldar_crashed") for g in gaps(env, "f-down")), 60,
             "a heldar_crashed gap")  # fmt: skip
    assert_whole(env, "f-down")
    assert [g["cause"].split(":")[0] for g in gaps(env, "f-down")] == ["heldar_stopped", "heldar_crashed"]


def test_standby_takes_over_when_the_active_one_dies(env, sim, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """Two kernels on one database: the second waits as a standby and takes over (gap cause failover)."""
    start_recording(env, sim, "f-fail")
    standby_settings = _settings(f"{env['settings'].ray_namespace}-b", env["settings"].data_dir,
                                 recordings_dir=env["settings"].recordings_root)  # fmt: skip
    standby = ensure_supervisor(standby_settings, env["url"])
    env.setdefault("more_supervisors", []).append(standby)
    assert supervisor_ping(env, standby)["role"] == "standby"
    time.sleep(2 * SEGMENT_S)
    assert health(env, "f-fail", standby_settings.ray_namespace) is None  # a standby runs nothing

    # The first kernel dies whole (its Ray cluster with it): supervisor, camera actors and writers.
    namespace = env["settings"].ray_namespace
    killed_at = time.monotonic()
    ray.kill(env["supervisor"], no_restart=True)
    for name in ray.util.list_named_actors(all_namespaces=True):
        if name["namespace"] == namespace:
            ray.kill(ray.get_actor(name["name"], namespace=namespace), no_restart=True)
    env["supervisor"] = standby
    wait_for(lambda: supervising(supervisor_ping(env, standby)), 15, "the standby to take over within 15 s")
    took_over_s = time.monotonic() - killed_at
    wait_for(lambda: recording(env, "f-fail", standby_settings.ray_namespace), 40, "recording on the new kernel")
    env["settings"] = standby_settings
    assert_whole(env, "f-fail")
    failover = [g for g in gaps(env, "f-fail") if g["cause"].startswith("failover")]
    assert failover, (gaps(env, "f-fail"), took_over_s)
