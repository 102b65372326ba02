"""``heldar api`` replicas on a real Ray cluster (``ray start --head``) over one external database.

Two ``heldar api`` subprocesses on two ports join the cluster; a simulated camera registered through the
first one records (the supervisor the first replica made sure of lives in the cluster). One replica is
killed with SIGKILL: a client loop on the other sees no error, the camera keeps recording (new segments are
indexed after the kill), and the cluster's supervisor is untouched. A ``heldar api`` without the cluster's
address or an external database refuses with one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from heldar.fakecam import FakeCamSimThread
from tests.integration.heldar_process import HELDAR, HeldarProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CAMERA = "replica-cam"


def _ray() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict[str, str], Path]]:
    """A one-node Ray cluster started as an operator would (``ray start --head``); yields (address, env)."""
    temp = Path("/tmp") / f"heldar-rayapi-{os.getpid()}"  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": os.getcwd()}
    for name in ("RAY_ADDRESS", "HELDAR_RAY_ADDRESS", "HELDAR_DATABASE_URL"):
        env.pop(name, None)
    port = free_port()
    try:
        subprocess.run([_ray(), "start", "--head", f"--port={port}", "--num-cpus=3", "--include-dashboard=false",
                        "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp}"],
                       check=True, env=env, capture_output=True, timeout=120)  # fmt: skip
        yield f"127.0.0.1:{port}", env, temp
    finally:
        _stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_cluster(temp: Path) -> None:
    """Kill this cluster's processes only (``ray stop`` would stop every Ray of this user on the machine)."""
    marker = str(temp)
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or []):
                victims += [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(victims, timeout=20)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class ClientLoop(threading.Thread):
    """A client of one replica: lists cameras and reads the camera's health every 100 ms, counting errors."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.ok = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self.stop_event.is_set():
                for path in ("/api/v1/cameras", f"/api/v1/cameras/{CAMERA}/health"):
                    try:
                        r = client.get(path)
                        if r.status_code == 200:
                            self.ok += 1
                        else:
                            self.errors.append(f"{path}: {r.status_code}")
                    except httpx.HTTPError as exc:
                        self.errors.append(f"{path}: {exc.__class__.__name__}")
                self.stop_event.wait(0.1)


@pytest.fixture(scope="module")
def replicas(cluster, new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[HeldarProcess]]:  # type: ignore[no-untyped-def]
    address, cluster_env, _ = cluster
    tmp = tmp_path_factory.mktemp("replicas")
    env = {
        **cluster_env,
        "HELDAR_RAY_ADDRESS": address,
        "HELDAR_DATABASE_URL": new_database(migrated=False),
        "HELDAR_RAY_NAMESPACE": f"heldar-replicas-{uuid.uuid4().hex[:6]}",
        "HELDAR_DATA_DIR": str(tmp / "data"),  # the shared recordings root (one machine: one folder)
        "HELDAR_AUTH_ENABLED": "false",
        "HELDAR_HEALTH_INTERVAL_S": "2",
        "HELDAR_INDEXER_INTERVAL_S": "1",
        "HELDAR_AI_ENABLED": "false",
    }
    pair = [HeldarProcess("api", free_port(), env, tmp / f"api-{i}.log") for i in range(2)]
    try:
        for replica in pair:  # the first one migrates the database and creates the supervisor
            replica.start()
            replica.wait_ready()
        yield pair
    finally:
        for replica in pair:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.terminate()
                try:
                    replica.proc.wait(30)
                except subprocess.TimeoutExpired:
                    replica.kill()


def test_killing_one_replica_interrupts_neither_the_other_nor_recording(replicas: list[HeldarProcess]) -> None:
    first, second = replicas
    with FakeCamSimThread(port=0, control_port=0) as sim:
        sim.add_camera(CAMERA)
        started = datetime.now(UTC)
        body = {"id": CAMERA, "name": "Replica cam", "main_stream_url": sim.url(CAMERA), "segment_seconds": 2}
        r = httpx.post(f"{first.base}/api/v1/cameras", json=body, timeout=10)
        assert r.status_code == 201, r.text
        _wait_for(
            lambda: second.segments_after(CAMERA, started, key="end_time"),
            90,
            "a first segment, read through the other replica",
        )
        assert second.get(f"/api/v1/cameras/{CAMERA}")["id"] == CAMERA

        client = ClientLoop(second.base)
        client.start()
        time.sleep(2)
        assert client.ok > 0, client.errors
        first.kill()
        killed_at = datetime.now(UTC)
        assert first.proc is not None and first.proc.returncode == -signal.SIGKILL
        try:
            fresh = _wait_for(lambda: len(second.segments_after(CAMERA, killed_at, key="end_time")) >= 3, 45,
                              "three segments indexed after the kill")  # fmt: skip
        finally:
            client.stop_event.set()
            client.join(10)
        assert fresh
        assert client.errors == [], client.errors[:10]
        assert client.ok > 20
        assert second.get(f"/api/v1/cameras/{CAMERA}/health")["state"] == "recording"
        ready = httpx.get(f"{second.base}/readyz", timeout=5).json()
        assert ready["ready"] is True, ready

    # A clean stop of the last replica leaves the cluster's supervisor running (heldar api owns nothing).
    assert second.proc is not None
    second.proc.terminate()
    assert second.proc.wait(30) == 0, second.log()[-3000:]
    assert "heldar stopped" in second.log()


def test_the_supervisor_outlives_every_replica(replicas: list[HeldarProcess], cluster) -> None:  # type: ignore[no-untyped-def]
    """After both replicas are gone the supervisor is still the cluster's named actor (asked by a new driver)."""
    address, env, temp = cluster
    namespace = replicas[0].env["HELDAR_RAY_NAMESPACE"]
    probe = (
        f"import ray; ray.init(address={address!r}, namespace={namespace!r}, log_to_driver=False); "
        "a = ray.get_actor('supervisor'); print(ray.get(a.ping.remote(), timeout=30)['role'])"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:] + _ray_log_tail(temp)
    assert result.stdout.strip().splitlines()[-1] == "active"


def _ray_log_tail(temp: Path) -> str:
    tails = []
    for name in ("gcs_server.out", "gcs_server.err", "raylet.out", "raylet.err"):
        for path in temp.glob(f"session_latest/logs/{name}"):
            tails.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(tails)


@pytest.mark.parametrize(
    ("unset", "named"),
    [("HELDAR_RAY_ADDRESS", "HELDAR_RAY_ADDRESS"), ("HELDAR_DATABASE_URL", "HELDAR_DATABASE_URL")],
)
def test_api_without_a_cluster_refuses_in_one_line(tmp_path: Path, unset: str, named: str) -> None:
    env = {**os.environ, "HELDAR_DATA_DIR": str(tmp_path / "data"), "HELDAR_RAY_ADDRESS": "127.0.0.1:1",
           "HELDAR_DATABASE_URL": "postgresql://heldar@127.0.0.1:1/heldar"}  # fmt: skip
    env.pop(unset)
    result = subprocess.run([*HELDAR, "api"], env=env, capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert named in lines[0] and "heldar serve" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
