"""A real two-node Ray cluster on this machine (``ray start --head`` and ``ray start --address``): cameras spread
over both nodes, the second node's raylet is killed, and every camera records again on the head.

The test session's own Ray is a different cluster, so the scenario runs as its own driver process
(``tests/integration/cluster_scenario.py``). Node death is noticed by Ray's GCS health checks; the cluster is
started with ``RAY_health_check_period_ms=1000`` and ``RAY_health_check_failure_threshold=5`` (the README's
"Node loss" section says why).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RAY_NODE_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5",
                   "RAY_health_check_timeout_ms": "1000"}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    temp = Path("/tmp") / f"heldar-ray-{os.getpid()}"  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, **RAY_NODE_HEALTH, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": os.getcwd()}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--disable-usage-stats", f"--temp-dir={temp}"]
    try:
        subprocess.run([_ray(), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                        "--node-ip-address=127.0.0.1", *common], check=True, env=env, capture_output=True,
                       timeout=120)  # fmt: skip
        subprocess.run([_ray(), "start", f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                        *common], check=True, env=env, capture_output=True, timeout=120)  # fmt: skip
        yield address, env
    finally:
        subprocess.run([_ray(), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_node_loss_moves_every_camera_to_a_live_node(cluster, new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, env = cluster
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.cluster_scenario", "--address", address,
         "--database-url", new_database(), "--data-dir", str(tmp_path / "data"), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["nodes"] == 2
    assert report["on_lost_node"], f"SPREAD put no camera on the second node: {report['placement']}"
    assert report["recording_again_s"] <= 30, report
    for cid, causes in report["gaps"].items():
        assert all(causes), (cid, causes)  # every loss has a cause
        if cid in report["on_lost_node"]:
            assert any(c.startswith("node_lost") for c in causes), (cid, causes)
    assert all(not files for files in report["unindexed"].values()), report["unindexed"]
    assert report["supervisor"]["role"] == "active" and all(report["supervisor"]["loops"].values())
