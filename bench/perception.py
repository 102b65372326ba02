"""Perception benchmark: frames/s through sampler → detectors at 1, 8 and 32 cameras, frame → detection
row latency (p50/p99) with the CPU person detector at 640 px, and ingest rows/s into PostgreSQL.

    python -m bench.perception [--cameras 1,8,32] [--window 20] [--ingest-rows 200000]

Real parts only: the embedded PostgreSQL, a local Ray, the RTSP simulator with the moving-figure scene.
Prints one JSON document and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ray

from actors.handles import ensure_supervisor
from actors.ingest import get_ingest
from actors.sampler import get_sampler
from config import load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.fakecam.scene import SceneSource
from heldar.perception.detections import Detection, DetectionBatch
from heldar.perception.ingest import FanOut, Ingestor
from heldar.store.database import EmbeddedPostgres, connect, create_pool
from heldar.store.migrate import migrate

logger = logging.getLogger(__name__)


def _url_for(server: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def bench_ingest(server: str, rows: int, per_frame: int = 20, frames_per_flush: int = 250) -> dict[str, Any]:
    url = _url_for(server, "bench_ingest")
    conn = await connect(server)
    await conn.execute('CREATE DATABASE "bench_ingest"')
    await conn.close()
    conn = await connect(url)
    await migrate(conn)
    await conn.execute("INSERT INTO cameras (id, name, main_stream_url) VALUES ('c1', 'c1', 'rtsp://h/x')")
    await conn.close()
    pool = await create_pool(url, max_size=2)
    ingestor = Ingestor(pool, FanOut(pool), max_batch=frames_per_flush)
    t0 = datetime.now(UTC)
    dets = tuple(Detection("person", 0.9, (0.1, 0.1, 0.2, 0.4), f"t{i}", {"k": i}) for i in range(per_frame))
    frames = rows // per_frame
    batches = [DetectionBatch("c1", "person", f"f{i}", t0 + timedelta(milliseconds=i), dets) for i in range(frames)]
    started = time.perf_counter()
    for i in range(0, frames, frames_per_flush):
        ingestor.submit(batches[i : i + frames_per_flush])
        await ingestor.flush()
    elapsed = time.perf_counter() - started
    stored = await pool.fetchval("SELECT count(*) FROM detections")
    await pool.close()
    return {"rows": stored, "seconds": round(elapsed, 2), "rows_per_s": round(stored / elapsed),
            "detections_per_frame": per_frame, "frames_per_flush": frames_per_flush}  # fmt: skip


def _sql(url: str, query: str, *args: Any) -> None:
    async def run() -> None:
        conn = await connect(url)
        try:
            await conn.execute(query, *args)
        finally:
            await conn.close()

    asyncio.run(run())


def bench_pipeline(server: str, sim: FakeCamSimThread, cameras: int, task: str, fps: float, window: float,
                   detectors: int, data_dir: Path) -> dict[str, Any]:  # fmt: skip
    name = f"bench_{task}_{cameras}"
    asyncio.run(_create(server, name))
    url = _url_for(server, name)
    namespace = f"bench-{task}-{cameras}-{int(time.time())}"
    settings = load_settings(ray_namespace=namespace, data_dir=data_dir / name, recorder_enabled=False,
                             ai_detector_workers=detectors, ai_max_total_fps=max(40.0, cameras * fps))  # fmt: skip
    ids = [f"{task}-{i:02d}" for i in range(cameras)]
    for cid in ids:
        sim.add_camera(cid)
        _sql(url, "INSERT INTO cameras (id, name, main_stream_url, record_enabled) VALUES ($1, $1, $2, false)",
             cid, sim.url(cid))  # fmt: skip
        _sql(url, "INSERT INTO ai_tasks (id, camera_id, task_type, stream_profile, fps, width) VALUES"
             " ($1, $2, $3, 'main', $4, 640)", f"ai_{cid}", cid, task, fps)  # fmt: skip
    supervisor = ensure_supervisor(settings, url)
    started = time.monotonic()
    ray.get(supervisor.reconcile_perception.remote(), timeout=600)
    handles = [get_sampler(namespace, cid, "main") for cid in ids]
    startup = time.monotonic() - started
    time.sleep(4)  # warm-up: connect, first frames, MOG2 background

    def snapshot() -> list[dict[str, Any]]:
        return ray.get([h.stats.remote() for h in handles], timeout=60)

    ray.get(get_ingest(namespace).reset_latency.remote())  # latency of the measured window only
    before, t0 = snapshot(), time.monotonic()
    ingest_before = ray.get(get_ingest(namespace).stats.remote())
    time.sleep(window)
    after, t1 = snapshot(), time.monotonic()
    ingest = ray.get(get_ingest(namespace).stats.remote())
    span = t1 - t0
    rates = [(a["frames_sampled"] - b["frames_sampled"]) / span for a, b in zip(after, before, strict=True)]
    analysed = sum(a["results"] - b["results"] for a, b in zip(after, before, strict=True)) / span
    dropped = sum(a["frames_dropped"] - b["frames_dropped"] for a, b in zip(after, before, strict=True))
    granted = [a["fps"] for a in after]
    deviation = max(abs(r - g) / g for r, g in zip(rates, granted, strict=True)) if granted else 0.0
    ray.get(supervisor.shutdown.remote(), timeout=120)
    ray.kill(supervisor)
    for cid in ids:
        sim.remove_camera(cid)
    lat = ingest["latency"]
    return {
        "cameras": cameras, "task": task, "fps_per_camera_granted": granted[0] if granted else None,
        "sampled_fps_total": round(sum(rates), 2), "analysed_fps_total": round(analysed, 2),
        "max_fps_deviation_pct": round(100 * deviation, 2), "frames_dropped": dropped,
        "frames_ingested_in_window": ingest["frames"] - ingest_before["frames"],
        "latency_p50_ms": round(1000 * lat["p50"], 1) if lat["p50"] is not None else None,
        "latency_p99_ms": round(1000 * lat["p99"], 1) if lat["p99"] is not None else None,
        "startup_s": round(startup, 1), "window_s": round(span, 1), "detectors": detectors,
    }  # fmt: skip


async def _create(server: str, name: str) -> None:
    conn = await connect(server)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    conn = await connect(_url_for(server, name))
    await migrate(conn)
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cameras", default="1,8,32")
    parser.add_argument("--fps", type=float, default=2.0, help="motion task fps per camera")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--detectors", type=int, default=2)
    parser.add_argument("--ingest-rows", type=int, default=200_000)
    parser.add_argument("--skip-person", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="heldar-bench-perc-"))
    pg = EmbeddedPostgres(root / "pg")
    server = pg.start()
    results: dict[str, Any] = {}
    try:
        results["ingest"] = asyncio.run(bench_ingest(server, args.ingest_rows))
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        with FakeCamSimThread(source=SceneSource(cache_dir=str(root / "scene"))) as sim:
            if not args.skip_person:
                results["person_640"] = bench_pipeline(server, sim, 1, "person", 2.0, args.window, 1, root)
            results["pipeline"] = [
                bench_pipeline(server, sim, n, "motion", args.fps, args.window, args.detectors, root)
                for n in (int(x) for x in args.cameras.split(","))
            ]
    finally:
        if ray.is_initialized():
            ray.shutdown()
        pg.stop()
    print(json.dumps(results, indent=2))
    print(f"\ningest: {results['ingest']['rows_per_s']} rows/s")
    rows = ([results["person_640"]] if "person_640" in results else []) + results["pipeline"]
    print(f"{'task':8} {'cams':>4} {'granted':>7} {'sampled/s':>9} {'analysed/s':>10} {'dev%':>6} {'dropped':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7}")  # fmt: skip
    for r in rows:
        print(f"{r['task']:8} {r['cameras']:>4} {r['fps_per_camera_granted']:>7} {r['sampled_fps_total']:>9} "
              f"{r['analysed_fps_total']:>10} {r['max_fps_deviation_pct']:>6} {r['frames_dropped']:>7} "
              f"{r['latency_p50_ms']!s:>7} {r['latency_p99_ms']!s:>7}")  # fmt: skip


if __name__ == "__main__":
    main()
