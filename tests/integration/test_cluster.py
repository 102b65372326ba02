"""A real two-node Ray cluster on this machine (``ray start --head`` and ``ray start --address``): cameras spread
over both nodes, the second node's raylet is killed, and every camera records again on the head.

The test session's own Ray is a different cluster, so the scenario runs as its own driver process
(``tests/integration/cluster_scenario.py``). Node death is noticed by Ray's GCS health checks; the cluster is
started with ``RAY_health_check_period_ms=1000`` and ``RAY_health_check_failure_threshold=5`` (the README's
"Node loss" section says why).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ray_nodes import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    nodes = LocalCluster()
    try:
        nodes.start_head(num_cpus=2)
        nodes.add_node(num_cpus=1)
        yield nodes
    finally:
        nodes.stop()


def test_node_loss_moves_every_camera_to_a_live_node(cluster, new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.cluster_scenario", "--address", cluster.address,
         "--database-url", new_database(), "--data-dir", str(tmp_path / "data"), "--out", str(out)],
        env=cluster.env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["nodes"] == 2
    per_node = Counter(report["placement"].values())
    assert len(per_node) == 2 and max(per_node.values()) - min(per_node.values()) <= 1, report["placement"]
    assert report["recording_again_s"] <= 30, report
    for cid, causes in report["gaps"].items():
        assert all(causes), (cid, causes)  # every loss has a cause
        if cid in report["on_lost_node"]:
            assert any(c.startswith("node_lost") for c in causes), (cid, causes)
    assert all(not files for files in report["unindexed"].values()), report["unindexed"]
    assert report["supervisor"]["role"] == "active" and all(report["supervisor"]["loops"].values())
