"""Node loss on a real two-node Ray cluster, run as its own driver process (a test session's Ray is another).

    python -m tests.integration.cluster_scenario --address HOST:PORT --database-url URL --data-dir DIR --out F

Registers cameras from the simulator, waits until they all record, kills the raylet of the node that is not
the head (its workers die with it, as on a lost machine), and writes a JSON report: where each camera ran,
how long until all recorded again (health says ``recording`` on a live node, and a segment that started after
the kill is indexed), the gaps and their causes, closed files left unindexed and indexed rows that vanished.

The helpers here are shared with ``bench/cluster.py`` (which runs this scenario five times and also ramps a
hundred cameras over two nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import ray

from actors.handles import ensure_supervisor
from config import Settings, load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.media.segment_names import parse_segment_name
from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.store import cameras as camera_store
from heldar.store.database import create_pool
from tests.integration.recorder_env import db, wait_for

SEGMENT_S = 2
NAMESPACE = "heldar-cluster-test"


def scenario_settings(address: str, namespace: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ray_address": address, "ray_namespace": namespace, "data_dir": data_dir, "health_interval_s": 2,
        "health_timeout_s": 5, "indexer_interval_s": 1, "rtsp_timeout_s": 4, **overrides,
    }  # fmt: skip
    return load_settings(**values)


def register(database_url: str, sim: FakeCamSimThread, ids: list[str], segment_s: int) -> None:
    """Insert one simulator camera per id straight in the table (the caller reconciles)."""

    async def run() -> None:
        pool = await create_pool(database_url, max_size=1)
        try:
            for cid in ids:
                body = CameraCreate(id=cid, name=cid, main_stream_url=sim.add_camera(cid), segment_seconds=segment_s)
                await camera_store.insert_camera(pool, Camera.from_create(body, RecordingDefaults()))
        finally:
            await pool.close()

    asyncio.run(run())


def health(namespace: str, camera_id: str) -> dict[str, Any] | None:
    try:
        return dict(ray.get(ray.get_actor(f"camera:{camera_id}", namespace=namespace).health.remote(), timeout=3))
    except Exception:
        return None


def raylet_pid(node: dict[str, Any]) -> int:
    node_id = node["NodeID"]
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "raylet" in (proc.info["name"] or "") and f"--node_id={node_id}" in cmd:
            return int(proc.pid)
    raise LookupError(f"no raylet for node {node_id}")


def _where(_actor: Any) -> tuple[str, int]:
    return ray.get_runtime_context().get_node_id(), os.getpid()


def supervisor_where(supervisor: Any) -> tuple[str, int]:
    """The Ray node id and the process id of the supervisor actor."""
    node_id, pid = ray.get(supervisor.__ray_call__.remote(_where), timeout=30)
    return str(node_id), int(pid)


def first_segments_after(database_url: str, ids: list[str], after: datetime) -> dict[str, datetime]:
    """Per camera, when the first segment that started at or after ``after`` was indexed (its row's created_at)."""
    rows = db({"url": database_url}, "SELECT camera_id, min(created_at) AS first FROM segments "
              "WHERE camera_id = ANY($1) AND start_time >= $2 GROUP BY camera_id", ids, after)  # fmt: skip
    return {r["camera_id"]: r["first"] for r in rows}


def gap_causes(database_url: str, ids: list[str]) -> dict[str, list[str]]:
    rows = db({"url": database_url}, "SELECT camera_id, cause FROM recording_gaps WHERE camera_id = ANY($1) "
              "ORDER BY camera_id, gap_start", ids)  # fmt: skip
    out: dict[str, list[str]] = {c: [] for c in ids}
    for r in rows:
        out[r["camera_id"]].append(r["cause"])
    return out


def segment_ids(database_url: str, ids: list[str]) -> set[str]:
    return {r["id"] for r in db({"url": database_url}, "SELECT id FROM segments WHERE camera_id = ANY($1)", ids)}


def unindexed_closed_files(database_url: str, root: Path, ids: list[str], segment_s: int) -> dict[str, list[str]]:
    """Closed segment files (untouched for a segment length and more) that have no row."""
    out = {}
    for cid in ids:
        indexed = {r["file_name"].rsplit("/", 1)[-1] for r in db(
            {"url": database_url}, "SELECT file_name FROM segments WHERE camera_id = $1", cid)}  # fmt: skip
        closed = {
            p.name for p in (root / cid).rglob("*.mp4")
            if parse_segment_name(p.name) and time.time() - p.stat().st_mtime > segment_s + 4
        }  # fmt: skip
        out[cid] = sorted(closed - indexed)
    return out


def node_loss(args: argparse.Namespace) -> dict[str, Any]:
    namespace = args.namespace
    settings = scenario_settings(args.address, namespace, Path(args.data_dir))
    report: dict[str, Any] = {"cameras": args.cameras}
    with FakeCamSimThread() as sim:
        supervisor = ensure_supervisor(settings, args.database_url)
        ids = [f"node-cam-{i}" for i in range(args.cameras)]
        register(args.database_url, sim, ids, SEGMENT_S)
        ray.get(supervisor.reconcile.remote())
        wait_for(lambda: all((h := health(namespace, c)) and h["state"] == "recording" for c in ids), 120,
                 "all cameras recording")  # fmt: skip
        head_id = ray.get_runtime_context().get_node_id()  # this driver joined the head node
        nodes = {c: health(namespace, c)["node_id"] for c in ids}  # type: ignore[index]
        report["placement"] = nodes
        others = [n for n in ray.nodes() if n["Alive"] and n["NodeID"] != head_id]
        report["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        victim = others[0]
        on_victim = [c for c, n in nodes.items() if n == victim["NodeID"]]
        report["on_lost_node"] = on_victim
        report["supervisor_on_lost_node"] = supervisor_where(supervisor)[0] == victim["NodeID"]
        time.sleep(2 * SEGMENT_S)
        before_kill = segment_ids(args.database_url, ids)
        killed_wall = datetime.now(UTC)
        killed_at = time.monotonic()
        os.kill(raylet_pid(victim), signal.SIGKILL)

        def all_back() -> bool:
            for cid in ids:
                h = health(namespace, cid)
                if h is None or h["state"] != "recording" or h["node_id"] == victim["NodeID"]:
                    return False
            return True

        wait_for(all_back, 120, "every camera recording on a live node")
        report["recording_again_s"] = round(time.monotonic() - killed_at, 2)
        firsts = wait_for(lambda: (f := first_segments_after(args.database_url, ids, killed_wall)).keys() == set(ids)
                          and f, 120, "a segment started after the kill indexed for every camera")  # fmt: skip
        report["indexed_again_s"] = {c: round((t - killed_wall).total_seconds(), 2) for c, t in firsts.items()}
        report["all_indexed_again_s"] = max(report["indexed_again_s"].values())
        time.sleep(4 * SEGMENT_S + 4)
        report["gaps"] = gap_causes(args.database_url, ids)
        report["unindexed"] = unindexed_closed_files(args.database_url, settings.recordings_root, ids, SEGMENT_S)
        report["rows_lost"] = sorted(before_kill - segment_ids(args.database_url, ids))
        report["supervisor"] = ray.get(supervisor.ping.remote(), timeout=10)
        ray.get(supervisor.shutdown.remote(), timeout=90)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ray.init(address=args.address, namespace=args.namespace, log_to_driver=False)
    report = node_loss(args)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
