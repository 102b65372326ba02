"""Two ``heldar serve`` processes on one PostgreSQL database, as an operator would run them for failover.

Each has its own local Ray; both serve the API; only one supervisor holds the database's lock. The first is
killed whole (SIGKILL of its process tree: Ray, camera actors and ffmpeg die with it); the standby takes over
within 15 s, records the camera, and the lost seconds are a gap with cause ``failover``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from heldar.fakecam import FakeCamSimThread
from tests.integration.heldar_process import free_port
from tests.integration.pg_server import RestartablePostgres, postgres_bin
from tests.integration.recorder_env import db, wait_for
from tests.integration.test_serve import Served, _env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL server binaries (make deps)"),
]


@pytest.fixture(scope="module")
def pg() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres().init()
    server.start()
    yield server
    server.remove()


def on_shared_database(data_dir: Path, port: int, log_path: Path, extra: dict[str, str]) -> Served:
    """A served process whose extra environment (the database URL) survives ``_env``'s clean-up."""
    return Served("serve", port, {**_env(data_dir, port), **extra}, log_path, data_dir=data_dir)


def test_second_serve_is_a_standby_and_takes_over(pg: RestartablePostgres, tmp_path: Path) -> None:
    url = pg.url()
    recordings = tmp_path / "recordings"  # shared by both, as a shared volume would be
    common = {"HELDAR_DATABASE_URL": url, "HELDAR_RECORDINGS_DIR": str(recordings),
              "HELDAR_SUPERVISOR_STANDBY_POLL_S": "1", "HELDAR_INDEXER_INTERVAL_S": "1"}  # fmt: skip
    first = on_shared_database(tmp_path / "a", free_port(), tmp_path / "a.log", dict(common))
    second = on_shared_database(tmp_path / "b", free_port(), tmp_path / "b.log", dict(common))
    with FakeCamSimThread() as sim:
        sim.add_camera("door")
        try:
            first.start()
            first.wait_ready()
            body = {"id": "door", "name": "door", "main_stream_url": sim.url("door"), "segment_seconds": 2}
            assert httpx.post(f"{first.base}/api/v1/cameras", json=body, timeout=10).status_code == 201
            wait_for(lambda: len(db({"url": url}, "SELECT id FROM segments WHERE camera_id = 'door'")) >= 2, 60,
                  "the first kernel to record")  # fmt: skip
            second.start()
            second.wait_ready()  # a standby is ready: its API serves
            assert sim.session_count("door") == 1  # the standby runs no recorder of its own
            # both APIs answer from the same database
            assert [c["id"] for c in second.get("/api/v1/cameras")] == ["door"]

            killed = [first.proc.pid, *(p.pid for p in psutil.Process(first.proc.pid).children(recursive=True))]
            t = time.monotonic()
            first.kill(children=True)
            _, alive = psutil.wait_procs([psutil.Process(p) for p in killed if psutil.pid_exists(p)], timeout=10)
            assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
            count = len(db({"url": url}, "SELECT id FROM segments WHERE camera_id = 'door'"))
            wait_for(lambda: len(db({"url": url}, "SELECT id FROM segments WHERE camera_id = 'door'")) >= count + 2, 60,
                  "the standby to record")  # fmt: skip
            took_over_s = time.monotonic() - t
            gaps = wait_for(lambda: db({"url": url}, "SELECT cause FROM recording_gaps WHERE camera_id = 'door'"), 20,
                         "the failover gap")  # fmt: skip
            assert [g["cause"].split(":")[0] for g in gaps] == ["failover"], gaps
            assert took_over_s < 15 + 3 * 2, took_over_s  # takeover within 15 s, plus two segments to index
        finally:
            first.kill(children=True)
            second.kill(children=True)
