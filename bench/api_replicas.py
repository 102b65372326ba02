"""API replica kill benchmark (issue 15): what a client of one ``heldar api`` replica sees when another is
SIGKILLed, against a baseline window without a kill in the same run.

    python -m bench.api_replicas [--seconds 15] [--json out.json]

It starts an embedded PostgreSQL, a Ray cluster with ``ray start --head`` (its own temp dir, stopped by
killing exactly its processes), one simulated camera on 2 s segments and two ``heldar api`` processes (A, B).
Baseline: a client loop on B for ``--seconds``. Kill: the same loop on B while A is SIGKILLed one second in.
Per window: requests, errors, error rate, latency p50/p99, and segments indexed in the window (recording
must go on). JSON with every number goes to stdout (or ``--json FILE``), a short table to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.report import emit
from heldar.fakecam import FakeCamSimThread
from heldar.store.database import EmbeddedPostgres

CAMERA = "bench-cam"
PATHS = ("/api/v1/cameras", f"/api/v1/cameras/{CAMERA}/health")


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_marked(marker: str) -> None:
    victims = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or []):
                victims += [proc, *proc.children(recursive=True)]
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(victims, timeout=20)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            value = predicate()
            if value:
                return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def _client_window(base: str, seconds: float, during: Any = None) -> dict[str, Any]:
    """A client loop on ``base`` for ``seconds`` (``during`` runs in a thread one second in)."""
    latencies: list[float] = []
    errors: list[str] = []
    if during is not None:
        threading.Timer(1.0, during).start()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            for path in PATHS:
                started = time.perf_counter()
                try:
                    r = client.get(path)
                    if r.status_code != 200:
                        errors.append(f"{path}: {r.status_code}")
                except httpx.HTTPError as exc:
                    errors.append(f"{path}: {exc.__class__.__name__}")
                latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.05)
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_rate": len(errors) / max(1, len(latencies)),
        "latency_ms_p50": round(statistics.median(ordered), 2) if ordered else None,
        "latency_ms_p99": round(ordered[int(0.99 * (len(ordered) - 1))], 2) if ordered else None,
        "error_samples": errors[:5],
    }


def _segments_after(base: str, after: datetime) -> int:
    rows = httpx.get(f"{base}/api/v1/cameras/{CAMERA}/segments", params={"limit": 200}, timeout=10).json()
    return sum(1 for s in rows if datetime.fromisoformat(s["start_time"]) >= after)


def run(seconds: float) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="heldar-bench-api-"))
    ray_temp = Path("/tmp") / f"hbapi-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths must fit in 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELDAR_", "RAY_ADDRESS"))}
    env.update({"RAY_AUTH_MODE": "disabled", "PYTHONPATH": os.getcwd()})
    embedded = EmbeddedPostgres(scratch / "pg")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _progress("starting PostgreSQL and a Ray head (ray start --head) ...")
        url = embedded.start()
        port = _free_port()
        ray = str(Path(sys.executable).with_name("ray"))
        subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=3", "--include-dashboard=false",
                        "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={ray_temp}"],
                       check=True, env=env, capture_output=True, timeout=120)  # fmt: skip
        api_env = {**env, "HELDAR_RAY_ADDRESS": f"127.0.0.1:{port}", "HELDAR_DATABASE_URL": url,
                   "HELDAR_DATA_DIR": str(scratch / "data"), "HELDAR_AUTH_ENABLED": "false",
                   "HELDAR_AI_ENABLED": "false", "HELDAR_INDEXER_INTERVAL_S": "1"}  # fmt: skip
        ports = [_free_port(), _free_port()]
        for i, p in enumerate(ports):
            log = (scratch / f"api-{i}.log").open("ab")
            replica_env = {**api_env, "HELDAR_API_PORT": str(p)}
            procs.append(subprocess.Popen([sys.executable, "-m", "api.cli", "api"], env=replica_env, stdout=log,
                                          stderr=log))  # fmt: skip
            _progress(f"heldar api replica {'AB'[i]} on port {p} ...")
            _wait(lambda p=p: httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=3).status_code == 200, 180, "ready")
        a, b = (f"http://127.0.0.1:{p}" for p in ports)
        with FakeCamSimThread(port=0, control_port=0) as sim:
            sim.add_camera(CAMERA)
            body = {"id": CAMERA, "name": CAMERA, "main_stream_url": sim.url(CAMERA), "segment_seconds": 2}
            httpx.post(f"{a}/api/v1/cameras", json=body, timeout=10).raise_for_status()
            _wait(lambda: _segments_after(b, datetime(2000, 1, 1, tzinfo=UTC)) > 0, 90, "a first segment")
            _progress(f"baseline: a client of B for {seconds:.0f} s, no kill ...")
            t0 = datetime.now(UTC)
            baseline = _client_window(b, seconds)
            baseline["segments_indexed"] = _segments_after(b, t0)
            _progress(f"kill: a client of B for {seconds:.0f} s, replica A SIGKILLed 1 s in ...")
            t1 = datetime.now(UTC)
            killed = _client_window(b, seconds, during=lambda: procs[0].send_signal(signal.SIGKILL))
            time.sleep(2)  # the last segment of the window gets indexed
            killed["segments_indexed"] = _segments_after(b, t1)
            killed["replica_a_exit"] = procs[0].wait(10)
        return {
            "benchmark": "api_replicas",
            "ray": subprocess.run([ray, "--version"], capture_output=True, text=True).stdout.strip(),
            "window_s": seconds,
            "segment_s": 2,
            "baseline": baseline,
            "kill": killed,
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
                if proc.poll() is None:
                    proc.kill()
        _kill_marked(str(ray_temp))
        shutil.rmtree(ray_temp, ignore_errors=True)
        embedded.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def table(report: dict[str, Any]) -> str:
    rows = [("window", "requests", "errors", "error rate", "p50 ms", "p99 ms", "segments")]
    for name in ("baseline", "kill"):
        w = report[name]
        rows.append((name, str(w["requests"]), str(w["errors"]), f"{w['error_rate']:.4f}", str(w["latency_ms_p50"]),
                     str(w["latency_ms_p99"]), str(w["segments_indexed"])))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each client window")
    parser.add_argument("--json", default=None, help="write the JSON here (the table then goes to stdout)")
    args = parser.parse_args()
    report = run(args.seconds)
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
