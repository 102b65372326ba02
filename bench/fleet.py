"""200 cameras on one box: registration → all recording, then a steady window.

    python -m bench.fleet [--cameras 200] [--per-host 16] [--steady 600] [--segment-seconds 10] [--json out.json]

One embedded PostgreSQL, a local Ray, the supervisor (``HELDAR_CAMERAS_PER_RECORDER_HOST`` = ``--per-host``; 1 =
one camera actor per camera) and the camera simulator in a process of its own (``python -m heldar.fakecam``,
640x360 15 fps ~0.55 Mbit/s, shared encoder), so its packet fan-out does not share this driver's GIL with the
API timing. The API app runs in this process (Starlette TestClient, auth off) on the same database.

Reported:
* registration: rows inserted, one reconcile, seconds until every ``camera_status`` row says ``recording``;
* steady window (``--steady`` s): watchdog false positives (ffmpeg restarts per camera health, ``camera_offline``
  / ``recorder_error`` events, supervisor unit restarts: the simulator never fails, so each is a false positive),
  indexer lag p50/p99/max (``segments.created_at - end_time``: the segment's last frame to its row),
  ``GET /api/v1/health/cameras`` latency p50/p99/max (one call per second), supervisor CPU, and memory: PSS of
  every camera process + ffmpeg, the supervisor, Ray's daemons, PostgreSQL, the simulator; the machine's used
  memory; load average.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from bench.procs import MB, Mem, children_memory, cpu_delta, memory, tree_cpu
from bench.report import emit
from bench.stack import Stack

logger = logging.getLogger("bench.fleet")

TARGETS = {"all_recording_s": 90.0, "indexer_lag_p99_s": 3.0, "health_cameras_p99_ms": 100.0, "false_positives": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_simulator(n: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "heldar.fakecam", "--port", str(port), "--control-port", str(free_port()),
           "--cameras", str(n), "--replay-minutes", "1", "--no-clock"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if line.startswith("fakecam:"):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain the URL list
            return proc, port
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the simulator did not start")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def camera_health(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any] | None]:
    import ray

    refs = {cid: stack.supervisor.camera_health.remote(cid) for cid in ids}
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
    for cid, ref in refs.items():
        with contextlib.suppress(Exception):
            out[cid] = ray.get(ref, timeout=60)
    return out


def memory_report(stack: Stack, pids: set[int], supervisor_pid: int, sim_pid: int) -> dict[str, Any]:
    cams = Mem()
    ffmpeg = Mem()
    for pid in pids:
        cams = cams + (memory(pid) or Mem())
        ffmpeg = ffmpeg + children_memory(pid)
    infra: dict[str, float] = {}
    mine = psutil.Process().children(recursive=True)
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            if proc.name() in ("raylet", "gcs_server"):
                infra[proc.name()] = round((memory(proc.pid) or Mem()).pss / MB, 1)
    pm = stack.postmaster_pid()
    if pm:
        pg = (memory(pm) or Mem()) + children_memory(pm)
        infra["postgres"] = round(pg.pss / MB, 1)
    sim = (memory(sim_pid) or Mem()) + children_memory(sim_pid)
    infra["simulator"] = round(sim.pss / MB, 1)
    sup = memory(supervisor_pid) or Mem()
    vm = psutil.virtual_memory()
    return {
        "camera_processes": len(pids),
        "camera_processes_pss_mb": round(cams.pss / MB, 1),
        "ffmpeg_pss_mb": round(ffmpeg.pss / MB, 1),
        "supervisor_pss_mb": round(sup.pss / MB, 1),
        "infra_pss_mb": infra,
        "recording_total_pss_mb": round((cams.pss + ffmpeg.pss + sup.pss) / MB, 1),
        "machine_used_gb": round((vm.total - vm.available) / 2**30, 2),
        "machine_total_gb": round(vm.total / 2**30, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.supervisor_link import SupervisorLink
    from config import load_settings

    result: dict[str, Any] = {
        "benchmark": "fleet",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "cameras": args.cameras,
            "per_host": args.per_host,
            "steady_s": args.steady,
            "segment_seconds": args.segment_seconds,
        },
        "targets": TARGETS,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "memory_used_gb_before": round((psutil.virtual_memory().total - psutil.virtual_memory().available) / 2**30, 2),
    }
    sim, port = start_simulator(args.cameras)
    try:
        overrides = {"cameras_per_recorder_host": args.per_host}
        with Stack(start_sim=False, settings_overrides=overrides) as stack:
            assert stack.settings is not None and stack.db is not None
            supervisor_pid = stack.supervisor_pid()
            ids = [f"fleet-{i:03d}" for i in range(args.cameras)]
            t0 = time.monotonic()
            stack.add_cameras(
                [(cid, f"rtsp://127.0.0.1:{port}/cam{i + 1}") for i, cid in enumerate(ids)], args.segment_seconds
            )
            inserted_s = time.monotonic() - t0
            stack.reconcile(ids[-1], timeout=300)
            from bench.recording_overhead import wait_recording

            seen = wait_recording(stack, ids, t0, args.start_timeout)
            result["registration"] = {
                "rows_inserted_s": round(inserted_s, 2),
                "all_recording_s": max(seen.values()) if len(seen) == len(ids) else None,
                "median_recording_s": sorted(seen.values())[len(seen) // 2] if seen else None,
                "recording": len(seen),
                "of": len(ids),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            logger.info("registration: %s", result["registration"])
            health0 = camera_health(stack, ids)
            pids = {int(h["actor_pid"]) for h in health0.values() if h}
            units0 = {u["unit"]: u for u in ray.get(stack.supervisor.units_status.remote(), timeout=60)}
            api_settings = load_settings(auth_enabled=False, data_dir=stack.scratch / "api",
                                         ray_namespace=stack.namespace, webhooks_enabled=False)  # fmt: skip
            app = create_app(api_settings, stack.url, supervisor=SupervisorLink(stack.namespace))
            latencies: list[float] = []
            errors = 0
            sup0 = tree_cpu(supervisor_pid, children=False)
            window_start = datetime.now(UTC)
            mem_mid: dict[str, Any] = {}
            with TestClient(app) as client:
                t_start = time.monotonic()
                next_tick = t_start
                while time.monotonic() - t_start < args.steady:
                    t = time.perf_counter()
                    r = client.get("/api/v1/health/cameras")
                    latencies.append(1000 * (time.perf_counter() - t))
                    if r.status_code != 200 or len(r.json()) < len(ids):
                        errors += 1
                    if not mem_mid and time.monotonic() - t_start > args.steady / 2:
                        mem_mid = memory_report(stack, pids, supervisor_pid, sim.pid)
                    next_tick += 1.0
                    time.sleep(max(0.0, next_tick - time.monotonic()))
                    if int(time.monotonic() - t_start) % 60 == 0:
                        logger.info("steady %.0f s, load %.1f", time.monotonic() - t_start, os.getloadavg()[0])
                elapsed = time.monotonic() - t_start
            sup1 = tree_cpu(supervisor_pid, children=False)
            window_end = datetime.now(UTC)
            health1 = camera_health(stack, ids)
            units1 = {u["unit"]: u for u in ray.get(stack.supervisor.units_status.remote(), timeout=60)}
            lag = [float(r["lag"]) for r in stack.db.fetch(
                "SELECT extract(epoch FROM created_at - end_time) AS lag FROM segments "
                "WHERE camera_id = ANY($1) AND end_time >= $2 AND end_time < $3", ids, window_start, window_end,
            )]  # fmt: skip
            events = stack.db.fetch(
                "SELECT event_type AS type, count(*) AS n FROM events WHERE camera_id = ANY($1) AND created_at >= $2 "
                "GROUP BY event_type",
                ids, window_start,
            )  # fmt: skip
            restarts = sum(
                1 for cid in ids
                if health0.get(cid) and health1.get(cid) and health1[cid]["runs"] != health0[cid]["runs"]  # type: ignore[index]
            )  # fmt: skip
            unit_restarts = sum(
                max(0, int(units1.get(u, {}).get("restarts", 0)) - int(units0.get(u, {}).get("restarts", 0)))
                for u in units0
            )
            result["steady"] = {
                "seconds": round(elapsed, 1),
                "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                "cameras_answering_health": sum(1 for h in health1.values() if h),
                "recording_at_end": sum(1 for h in health1.values() if h and h["state"] == "recording"),
                "ffmpeg_restarts": restarts,
                "unit_restarts": unit_restarts,
                "events": {r["type"]: int(r["n"]) for r in events},
                "segments_indexed": len(lag),
                "indexer_lag_s": {"p50": pct(lag, 0.5), "p99": pct(lag, 0.99), "max": max(lag, default=None)},
                "health_cameras_ms": {
                    "n": len(latencies),
                    "errors": errors,
                    "p50": pct(latencies, 0.5),
                    "p99": pct(latencies, 0.99),
                    "max": round(max(latencies), 2) if latencies else None,
                },
                "supervisor_cpu_ms_s": round(1000 * cpu_delta(sup0, sup1).total_s / elapsed, 2),
                "memory_mid_window": mem_mid,
            }
            bad = {k: v for k, v in result["steady"]["events"].items() if k in ("camera_offline", "recorder_error")}
            result["steady"]["false_positives"] = restarts + unit_restarts + sum(bad.values())
            logger.info("steady: %s", {k: v for k, v in result["steady"].items() if k != "memory_mid_window"})
    finally:
        sim.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(10)
        if sim.poll() is None:
            sim.kill()
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def table(r: dict[str, Any]) -> str:
    reg, st = r.get("registration", {}), r.get("steady", {})
    mem = st.get("memory_mid_window", {})
    lines = [
        f"heldar fleet: {r['config']['cameras']} cameras, {r['config']['per_host']} per recorder host, "
        f"{r['config']['segment_seconds']} s segments; load avg start {r['loadavg_start']} end {r.get('loadavg_end')}",
        f"  registration → all recording: {reg.get('all_recording_s')} s ({reg.get('recording')}/{reg.get('of')}; "
        f"goal <= {TARGETS['all_recording_s']:.0f} s)",
        f"  steady {st.get('seconds')} s: false positives {st.get('false_positives')} (ffmpeg restarts "
        f"{st.get('ffmpeg_restarts')}, unit restarts {st.get('unit_restarts')}, events {st.get('events')})",
        f"  indexer lag s: {st.get('indexer_lag_s')} over {st.get('segments_indexed')} segments (goal p99 <= 3)",
        f"  GET /health/cameras ms: {st.get('health_cameras_ms')} (goal p99 <= 100)",
        f"  supervisor CPU {st.get('supervisor_cpu_ms_s')} ms/s; memory: camera processes "
        f"{mem.get('camera_processes')} = {mem.get('camera_processes_pss_mb')} MB + ffmpeg {mem.get('ffmpeg_pss_mb')} "
        f"MB + supervisor {mem.get('supervisor_pss_mb')} MB; infra {mem.get('infra_pss_mb')}; machine used "
        f"{mem.get('machine_used_gb')} of {mem.get('machine_total_gb')} GB",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=200)
    p.add_argument("--per-host", type=int, default=16)
    p.add_argument("--steady", type=float, default=600.0)
    p.add_argument("--segment-seconds", type=int, default=10)
    p.add_argument("--start-timeout", type=float, default=600.0)
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")  # fmt: skip
    for noisy in ("heldar.fakecam", "asyncio", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        result = run(args)
    except KeyboardInterrupt:
        return 130
    emit(result, table(result), args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
