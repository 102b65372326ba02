"""Node loss on a real two-node Ray cluster, run as its own driver process (a test session's Ray is another).

    python -m tests.integration.cluster_scenario --address HOST:PORT --database-url URL --data-dir DIR --out F

Registers cameras from the simulator, waits until they all record, kills the raylet of the node that is not
the head (its workers die with it, as on a lost machine), and writes a JSON report: where each camera ran,
how long until all recorded again, the gaps and their causes, and closed files left unindexed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import ray

from actors.handles import ensure_supervisor
from config import load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.media.segment_names import parse_segment_name
from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.store import cameras as camera_store
from heldar.store.database import create_pool
from tests.integration.recorder_env import db, wait_for

SEGMENT_S = 2


def _health(namespace: str, camera_id: str) -> dict[str, Any] | None:
    try:
        return dict(ray.get(ray.get_actor(f"camera:{camera_id}", namespace=namespace).health.remote(), timeout=3))
    except Exception:
        return None


def _raylet_pid(node: dict[str, Any]) -> int:
    node_id = node["NodeID"]
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "raylet" in (proc.info["name"] or "") and f"--node_id={node_id}" in cmd:
            return int(proc.pid)
    raise LookupError(f"no raylet for node {node_id}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    namespace = "heldar-cluster-test"
    ray.init(address=args.address, namespace=namespace, log_to_driver=False)
    settings = load_settings(
        ray_address=args.address, ray_namespace=namespace, data_dir=Path(args.data_dir),
        health_interval_s=2, health_timeout_s=5, indexer_interval_s=1, rtsp_timeout_s=4,
    )  # fmt: skip
    report: dict[str, Any] = {}
    with FakeCamSimThread() as sim:
        supervisor = ensure_supervisor(settings, args.database_url)
        ids = [f"node-cam-{i}" for i in range(args.cameras)]

        async def register() -> None:
            pool = await create_pool(args.database_url, max_size=1)
            try:
                for cid in ids:
                    body = CameraCreate(id=cid, name=cid, main_stream_url=sim.add_camera(cid),
                                        segment_seconds=SEGMENT_S)  # fmt: skip
                    await camera_store.insert_camera(pool, Camera.from_create(body, RecordingDefaults()))
            finally:
                await pool.close()

        asyncio.run(register())
        ray.get(supervisor.reconcile.remote())
        wait_for(lambda: all((h := _health(namespace, c)) and h["state"] == "recording" for c in ids), 120,
              "all cameras recording")  # fmt: skip
        head_id = ray.get_runtime_context().get_node_id()  # this driver joined the head node
        nodes = {c: _health(namespace, c)["node_id"] for c in ids}  # type: ignore[index]
        report["placement"] = nodes
        others = [n for n in ray.nodes() if n["Alive"] and n["NodeID"] != head_id]
        report["nodes"] = len([n for n in ray.nodes() if n["Alive"]])
        victim = others[0]
        on_victim = [c for c, n in nodes.items() if n == victim["NodeID"]]
        report["on_lost_node"] = on_victim
        time.sleep(2 * SEGMENT_S)
        killed_at = time.monotonic()
        os.kill(_raylet_pid(victim), signal.SIGKILL)

        def all_back() -> bool:
            for cid in ids:
                h = _health(namespace, cid)
                if h is None or h["state"] != "recording" or h["node_id"] == victim["NodeID"]:
                    return False
            return True

        wait_for(all_back, 120, "every camera recording on a live node")
        report["recording_again_s"] = round(time.monotonic() - killed_at, 2)
        time.sleep(4 * SEGMENT_S + 4)
        report["gaps"] = {
            c: [g["cause"] for g in db({"url": args.database_url},
                "SELECT cause FROM recording_gaps WHERE camera_id = $1 ORDER BY gap_start", c)]
            for c in ids
        }  # fmt: skip
        unindexed = {}
        for cid in ids:
            indexed = {r["file_name"].rsplit("/", 1)[-1] for r in db(
                {"url": args.database_url}, "SELECT file_name FROM segments WHERE camera_id = $1", cid)}  # fmt: skip
            closed = {
                p.name for p in (settings.recordings_root / cid).rglob("*.mp4")
                if parse_segment_name(p.name) and time.time() - p.stat().st_mtime > SEGMENT_S + 4
            }  # fmt: skip
            unindexed[cid] = sorted(closed - indexed)
        report["unindexed"] = unindexed
        report["supervisor"] = ray.get(supervisor.ping.remote(), timeout=10)
        ray.get(supervisor.shutdown.remote(), timeout=90)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
