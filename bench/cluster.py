"""Cluster benchmarks (issue 15) on two real Ray nodes on this machine (``ray start --head`` + ``ray start
--address``, started and stopped by ``tests/integration/ray_nodes.py::LocalCluster``, which kills only its own
processes).

    python -m bench.cluster [--only node-loss,ramp,api] [--runs 5] [--ramp-cameras 20,50,100] [--json out.json]

* **node-loss**: ``--runs`` times a fresh two-node cluster and database; ``--loss-cameras`` cameras spread over
  both nodes; the second node's raylet is SIGKILLed. Per run: kill → every camera's health says ``recording``
  on a live node, and kill → a segment that started after the kill is indexed for every camera (the number
  reported as "recording again"); closed segments lost (closed files without a row, rows that vanished); the
  gap causes seen. Each run is ``tests/integration/cluster_scenario.py`` (the test's own driver).
* **ramp**: for each N of ``--ramp-cameras`` (in order; it stops at the first N that does not all record
  within ``--ramp-timeout``), a fresh two-node cluster; N cameras of the cheapest simulator stream (160x90,
  5 fps, no clock overlay) inserted and reconciled at once. Registration → each camera's first indexed
  segment (and its ``camera_status`` saying ``recording``); the spread over nodes; the supervisor's CPU
  seconds per minute during the ramp and during a ``--steady-seconds`` window after it, beside the whole
  machine's CPU (other agents included) and the load average.
* **api**: ``bench.api_replicas`` (two ``heldar api`` replicas, one SIGKILLed; a client of the other).

JSON with every sample goes to stdout (or ``--json FILE``), a short table to stderr (stdout with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.report import emit
from bench.stack import create_database
from heldar.store.database import EmbeddedPostgres, prepare_database
from tests.integration.ray_nodes import LocalCluster

PHASES = ("node-loss", "ramp", "api")
RAMP_SEGMENT_S = 4


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _new_database(server_url: str, scratch: Path) -> str:
    """A fresh, migrated database on the embedded server."""
    name = f"b_{uuid.uuid4().hex[:10]}"

    async def create() -> str:
        url, _ = await prepare_database(await create_database(server_url, name, migrated=False), scratch)
        return url

    return asyncio.run(create())


def _two_nodes(head_cpus: int, node_cpus: int, attempts: int = 3) -> LocalCluster:
    """A head and a second node; ``ray start`` is retried (a busy machine makes a raylet miss Ray's fixed 30 s
    registration deadline)."""
    for attempt in range(1, attempts + 1):
        cluster = LocalCluster()
        try:
            cluster.start_head(num_cpus=head_cpus)
            cluster.add_node(num_cpus=node_cpus)
            return cluster
        except Exception as exc:
            cluster.stop()
            if attempt == attempts:
                raise
            _progress(f"two nodes did not start (attempt {attempt}, load {_load()}): {str(exc)[-200:]}")
        except BaseException:
            cluster.stop()
            raise
    raise AssertionError("unreachable")


# --- node loss ------------------------------------------------------------------------------------
def bench_node_loss(server_url: str, scratch: Path, runs: int, cameras: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    for run in range(runs):
        _progress(f"node loss run {run + 1}/{runs}: two nodes, {cameras} cameras, kill the second raylet ...")
        out = scratch / f"node-loss-{run}.json"
        cluster = _two_nodes(2, 1)
        load_before = _load()
        try:
            result = subprocess.run(
                [sys.executable, "-m", "tests.integration.cluster_scenario", "--address", cluster.address,
                 "--database-url", _new_database(server_url, scratch), "--data-dir", str(scratch / f"data-{run}"),
                 "--cameras", str(cameras), "--namespace", f"bench-loss-{run}", "--out", str(out)],
                env=cluster.env, capture_output=True, text=True, timeout=400,
            )  # fmt: skip
        finally:
            cluster.stop()
        if result.returncode != 0:
            samples.append({"run": run, "failed": result.stderr[-2000:], "load_avg": [load_before, _load()]})
            continue
        report = json.loads(out.read_text())
        report.update(run=run, load_avg=[load_before, _load()])
        samples.append(report)
        _progress(f"  health recording again {report['recording_again_s']} s, every camera indexed again "
                  f"{report['all_indexed_again_s']} s, on the lost node {report['on_lost_node']}")  # fmt: skip
    return {"cameras": cameras, "runs": samples, "summary": _node_loss_summary(samples)}


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def _node_loss_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    done = [s for s in samples if "failed" not in s]
    causes: Counter[str] = Counter()
    wrong: list[str] = []
    for s in done:
        for cid, seen in s["gaps"].items():
            causes.update(c.split(":", 1)[0] for c in seen)
            if cid in s["on_lost_node"] and not any(c.startswith("node_lost") for c in seen):
                wrong.append(f"run {s['run']} {cid}: {seen}")
    return {
        "runs_ok": len(done),
        "runs_failed": len(samples) - len(done),
        "indexed_again_s": _stats([s["all_indexed_again_s"] for s in done]),
        "health_recording_again_s": _stats([s["recording_again_s"] for s in done]),
        "runs_within_30s": sum(1 for s in done if s["all_indexed_again_s"] <= 30),
        "cameras_moved": sum(len(s["on_lost_node"]) for s in done),
        "supervisor_on_lost_node": sum(1 for s in done if s.get("supervisor_on_lost_node")),
        "closed_files_unindexed": sum(len(v) for s in done for v in s["unindexed"].values()),
        "indexed_rows_lost": sum(len(s["rows_lost"]) for s in done),
        "gap_causes": dict(causes),
        "lost_node_cameras_without_node_lost_gap": wrong,
    }


# --- ramp -----------------------------------------------------------------------------------------
def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def bench_ramp(server_url: str, scratch: Path, cameras: int, steady_s: float, timeout_s: float) -> dict[str, Any]:
    import ray

    from actors.handles import ensure_supervisor
    from heldar.fakecam import EncoderSettings, FakeCamSimThread, TestPatternSource
    from tests.integration.cluster_scenario import (
        first_segments_after,
        register,
        scenario_settings,
        supervisor_where,
    )
    from tests.integration.recorder_env import db

    _progress(f"ramp: two nodes, {cameras} cameras ...")
    url = _new_database(server_url, scratch)
    cluster = _two_nodes(2, 2)
    namespace = f"bench-ramp-{cameras}"
    saved_env = dict(os.environ)
    os.environ.update({k: v for k, v in cluster.env.items() if k.startswith("RAY_")})
    sim = FakeCamSimThread(settings=EncoderSettings(width=160, height=90, fps=5, preset="ultrafast"),
                           source=TestPatternSource(clock=False))  # fmt: skip
    supervisor = None
    result: dict[str, Any] = {"cameras": cameras, "segment_s": RAMP_SEGMENT_S}
    try:
        ray.init(address=cluster.address, namespace=namespace, log_to_driver=False, configure_logging=False)
        sim.start()
        settings = scenario_settings(cluster.address, namespace, scratch / f"ramp-{cameras}")
        supervisor = ensure_supervisor(settings, url)
        sup_node, sup_pid = supervisor_where(supervisor)
        nodes = {n["NodeID"]: ("head" if "node:__internal_head__" in n["Resources"] else "worker")
                 for n in ray.nodes() if n["Alive"]}  # fmt: skip
        result["supervisor_node"] = nodes.get(sup_node, sup_node[:12])
        ids = [f"ramp-{i:03d}" for i in range(cameras)]
        result["load_avg_start"] = _load()
        wall0, t0 = datetime.now(UTC), time.monotonic()
        cpu0, busy0 = _cpu_s(sup_pid), _machine_busy_s()
        register(url, sim, ids, RAMP_SEGMENT_S)
        ray.get(supervisor.reconcile.remote(), timeout=300)
        result["registered_and_reconciled_s"] = round(time.monotonic() - t0, 2)
        status_seen: dict[str, float] = {}
        firsts: dict[str, datetime] = {}
        while time.monotonic() - t0 < timeout_s:
            for r in db({"url": url}, "SELECT camera_id FROM camera_status WHERE state = 'recording'"):
                status_seen.setdefault(r["camera_id"], round(time.monotonic() - t0, 1))
            firsts = first_segments_after(url, ids, wall0)
            if len(firsts) == cameras:
                break
            time.sleep(1)
        ramp_wall = time.monotonic() - t0
        cpu1, busy1 = _cpu_s(sup_pid), _machine_busy_s()
        result["load_avg_after_ramp"] = _load()
        first_s = {c: round((t - wall0).total_seconds(), 2) for c, t in firsts.items()}
        rows = db({"url": url}, "SELECT camera_id, state, recorder_node, last_error FROM camera_status")
        by_prefix = {nid[:12]: role for nid, role in nodes.items()}
        placed = {r["camera_id"]: by_prefix.get(str(r["recorder_node"] or "").rsplit("/", 1)[-1], "unknown")
                  for r in rows}  # fmt: skip
        result["nodes"] = {nid[:12]: role for nid, role in nodes.items()}
        result["recorder_nodes"] = dict(Counter(str(r["recorder_node"]) for r in rows))
        per_node: dict[str, dict[str, Any]] = {}
        for role in sorted(set(placed.values())):
            mine = [first_s[c] for c, p in placed.items() if p == role and c in first_s]
            per_node[role] = {
                "cameras": sum(1 for p in placed.values() if p == role),
                "recording": len(mine),
                "all_recording_s": max(mine) if mine else None,
                "median_first_segment_s": round(statistics.median(mine), 2) if mine else None,
            }
        result.update(
            all_recording=len(firsts) == cameras,
            recording=len(firsts),
            all_first_segment_s=max(first_s.values()) if len(firsts) == cameras else None,
            median_first_segment_s=round(statistics.median(first_s.values()), 2) if first_s else None,
            all_status_recording_s=max(status_seen.values()) if len(status_seen) == cameras else None,
            per_node=per_node,
            ramp_window_s=round(ramp_wall, 1),
            supervisor_cpu_s_per_min_ramp=round(60 * (cpu1 - cpu0) / ramp_wall, 2),
            machine_busy_cores_ramp=round((busy1 - busy0) / ramp_wall, 2),
        )
        if len(firsts) < cameras:
            result["not_recording"] = {r["camera_id"]: [r["state"], r["last_error"]] for r in rows
                                       if r["camera_id"] not in firsts}  # fmt: skip
            result["not_recording_without_status_row"] = sorted(set(ids) - {r["camera_id"] for r in rows})
            return result
        t1 = time.monotonic()
        time.sleep(steady_s)
        steady_wall = time.monotonic() - t1
        cpu2, busy2 = _cpu_s(sup_pid), _machine_busy_s()
        result.update(
            steady_window_s=round(steady_wall, 1),
            supervisor_cpu_s_per_min_steady=round(60 * (cpu2 - cpu1) / steady_wall, 2),
            machine_busy_cores_steady=round((busy2 - busy1) / steady_wall, 2),
            load_avg_after_steady=_load(),
            memory_available_gib=round(psutil.virtual_memory().available / 2**30, 1),
        )
        return result
    finally:
        if supervisor is not None:
            with contextlib.suppress(Exception):
                ray.get(supervisor.shutdown.remote(), timeout=120)
        with contextlib.suppress(Exception):
            ray.shutdown()
        with contextlib.suppress(Exception):
            sim.stop()
        cluster.stop()
        os.environ.clear()
        os.environ.update(saved_env)


# --- report ---------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phase(s) {sorted(unknown)}; choose from {', '.join(PHASES)}")
    report: dict[str, Any] = {"benchmark": "cluster", "when": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(),
                              "load_avg_start": _load()}  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="heldar-bench-cluster-"))
    embedded = EmbeddedPostgres(scratch / "pg")
    try:
        server_url = embedded.start() if {"node-loss", "ramp"} & set(phases) else ""
        if "node-loss" in phases:
            report["node_loss"] = bench_node_loss(server_url, scratch, args.runs, args.loss_cameras)
        if "ramp" in phases:
            report["ramp"] = []
            for n in (int(x) for x in args.ramp_cameras.split(",")):
                step = bench_ramp(server_url, scratch, n, args.steady_seconds, args.ramp_timeout)
                report["ramp"].append(step)
                _progress(f"  {json.dumps({k: v for k, v in step.items() if k != 'not_recording'}, default=str)}")
                if not step["all_recording"]:
                    _progress(f"ramp: only {step['recording']} of {n} cameras recorded; stopping the ramp here")
                    break
        if "api" in phases:
            from bench.api_replicas import run as api_replicas

            report["api_replicas"] = api_replicas(args.api_seconds)
    finally:
        embedded.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    report["load_avg_end"] = _load()
    return report


def table(report: dict[str, Any]) -> str:
    lines = [f"load average at start {report['load_avg_start']}, at end {report['load_avg_end']} "
             f"({report['cpus']} cores, shared)"]  # fmt: skip
    if "node_loss" in report:
        s = report["node_loss"]["summary"]
        lines += [
            f"node loss ({report['node_loss']['cameras']} cameras, {s['runs_ok']} runs ok, {s['runs_failed']} failed):",
            f"  kill → every camera has a new indexed segment: median {s['indexed_again_s']['median']} s, "
            f"max {s['indexed_again_s']['max']} s ({s['runs_within_30s']} runs ≤ 30 s)",
            f"  kill → health recording on a live node: median {s['health_recording_again_s']['median']} s, "
            f"max {s['health_recording_again_s']['max']} s",
            f"  closed files unindexed {s['closed_files_unindexed']}, indexed rows lost {s['indexed_rows_lost']}, "
            f"gap causes {s['gap_causes']}, moved cameras without a node_lost gap "
            f"{len(s['lost_node_cameras_without_node_lost_gap'])}",
        ]
    for step in report.get("ramp", []):
        lines.append(
            f"ramp {step['cameras']} cameras: {step['recording']} recording, all first segments "
            f"{step['all_first_segment_s']} s (median {step['median_first_segment_s']} s), per node "
            + ", ".join(f"{k} {v['cameras']} ({v['all_recording_s']} s)" for k, v in step["per_node"].items())
            + f"; supervisor CPU s/min ramp {step['supervisor_cpu_s_per_min_ramp']}, steady "
            f"{step.get('supervisor_cpu_s_per_min_steady')}; load {step.get('load_avg_after_ramp')}"
        )
    if "api_replicas" in report:
        from bench.api_replicas import table as api_table

        lines += ["API replica kill:", api_table(report["api_replicas"])]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases: {', '.join(PHASES)}")
    parser.add_argument("--runs", type=int, default=5, help="node-loss runs")
    parser.add_argument("--loss-cameras", type=int, default=4, help="cameras in each node-loss run")
    parser.add_argument("--ramp-cameras", default="100", help="comma-separated N, run in order")
    parser.add_argument("--steady-seconds", type=float, default=30.0, help="steady window after the ramp")
    parser.add_argument("--ramp-timeout", type=float, default=600.0, help="registration → all recording limit")
    parser.add_argument("--api-seconds", type=float, default=15.0, help="bench.api_replicas window length")
    parser.add_argument("--json", default=None, help="write the JSON here (the table then goes to stdout)")
    args = parser.parse_args()
    report = run(args)
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
