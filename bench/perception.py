"""Perception benchmark: frames/s through sampler → detectors at 1, 8 and 32 cameras, frame → detection
row latency (p50/p99) with the CPU person detector at 640 px, ingest rows/s into PostgreSQL against a
baseline measured in the same run (asyncpg ``copy_records_to_table`` of the same rows on one connection),
and HTTP ingest → zone event latency at a fixed batch rate.

    python -m bench.perception [--cameras 1,8,32] [--window 20] [--ingest-rows 300000]
    python -m bench.perception --ingest-only          # baseline + ingest + HTTP → zone latency only

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
from bench.stack import create_database, database_url
from config import load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.fakecam.scene import SceneSource
from heldar.perception.detections import Detection, DetectionBatch
from heldar.perception.ingest import FanOut, Ingestor
from heldar.store.database import EmbeddedPostgres, connect, create_pool

logger = logging.getLogger(__name__)


def _shape(rows: int, per_frame: int) -> tuple[list[DetectionBatch], datetime]:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    dets = tuple(Detection("person", 0.9, (0.1, 0.1, 0.2, 0.4), f"t{i}", {"k": i}) for i in range(per_frame))
    frames = rows // per_frame
    batches = [DetectionBatch("c1", "person", f"f{i}", t0 + timedelta(milliseconds=i), dets) for i in range(frames)]
    return batches, t0


async def _fresh_db(server: str, name: str) -> str:
    url = await create_database(server, name)
    conn = await connect(url)
    await conn.execute("INSERT INTO cameras (id, name, main_stream_url) VALUES ('c1', 'c1', 'rtsp://h/x')")
    await conn.close()
    return url


async def bench_copy_baseline(server: str, rows: int, per_frame: int = 20, tag: str = "") -> dict[str, Any]:
    """asyncpg's ``copy_records_to_table`` of ``rows`` detection rows (same columns, same jsonb) on one
    connection, records built beforehand: the floor the ingest path is measured against."""
    from heldar.store.perception import DETECTION_COLUMNS, _binary_jsonb

    url = await _fresh_db(server, f"bench_copy{tag}")
    batches, _ = _shape(rows, per_frame)
    records = [
        (f"det_{i:024x}", b.camera_id, b.task_type, b.captured_at, d.label, d.confidence, list(d.bbox or ()),
         d.track_id, {**d.attributes, "source": "kernel", "_prov": {"producer": "sampler"}}, b.frame_id, "kernel")
        for i, (b, d) in enumerate((b, d) for b in batches for d in b.detections)
    ]  # fmt: skip
    conn = await connect(url)
    await _binary_jsonb(conn)
    started = time.perf_counter()
    await conn.copy_records_to_table("detections", records=records, columns=DETECTION_COLUMNS)
    elapsed = time.perf_counter() - started
    stored = await conn.fetchval("SELECT count(*) FROM detections")
    await conn.close()
    return {"rows": stored, "seconds": round(elapsed, 2), "rows_per_s": round(stored / elapsed)}


class _Noop:
    name = "noop"

    async def consume(self, batch: DetectionBatch) -> None:
        return None


async def bench_ingest(
    server: str, rows: int, per_frame: int = 20, frames_per_submit: int = 50, connections: int = 1, tag: str = ""
) -> dict[str, Any]:
    """The ingest actor's path as it runs: producers submit frames (``frames_per_submit`` at a time, as fast
    as they can) while :meth:`Ingestor.run` writes what is buffered (kernel stamping, outbox + COPY,
    idempotent per frame) and fans each write out to one consumer with its ledger rows and the outbox marked
    fanned out. ``connections`` 1 is the baseline's one connection; 2 is the actor's default pool
    (``HELDAR_AI_INGEST_CONNECTIONS``). The clock stops when every row is committed and fanned out."""
    url = await _fresh_db(server, f"bench_ingest_{connections}{tag}")
    pool = await create_pool(url, max_size=connections, min_size=connections)
    ingestor = Ingestor(pool, FanOut(pool, [_Noop()]))
    batches, _ = _shape(rows, per_frame)
    frames = len(batches)
    started = time.perf_counter()
    loop = asyncio.get_running_loop().create_task(ingestor.run())
    for i in range(0, frames, frames_per_submit):
        ingestor.submit(batches[i : i + frames_per_submit])
        await asyncio.sleep(0)
    while ingestor.fanout.completed < frames:  # noqa: ASYNC110 (polling a counter of another task)
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    loop.cancel()
    stored = await pool.fetchval("SELECT count(*) FROM detections")
    unfanned = await pool.fetchval("SELECT count(*) FROM outbox WHERE fanned_out_at IS NULL")
    ledger = await pool.fetchval("SELECT count(*) FROM consumer_fanout")
    await pool.close()
    return {"rows": stored, "seconds": round(elapsed, 2), "rows_per_s": round(stored / elapsed),
            "detections_per_frame": per_frame, "connections": connections, "flushes": ingestor.flushes,
            "frames_per_flush": round(frames / max(1, ingestor.flushes)), "unfanned": unfanned,
            "ledger_rows": ledger}  # fmt: skip


def bench_http_zone_latency(server: str, data_dir: Path, rate: float = 200.0, seconds: float = 10.0,
                            cameras: int = 20) -> dict[str, Any]:  # fmt: skip
    """``POST /api/v1/ai/events`` at ``rate`` batches/s (``cameras`` cameras, one walking track each: 5 frames in
    a region zone, 5 out) against a real ``heldar`` API (uvicorn) whose ingest actor runs the zone engine;
    latency from sending the batch that confirms an enter or exit to the NOTIFY of its ``zone_*`` event."""
    import threading

    import uvicorn

    from api.app import create_app

    name = "bench_http_zones"
    asyncio.run(_create(server, name))
    url = database_url(server, name)
    namespace = f"bench-http-{int(time.time())}"
    settings = load_settings(ray_namespace=namespace, data_dir=data_dir / name, auth_enabled=False,
                             recorder_enabled=False, webhooks_enabled=False, db_max_connections=16)  # fmt: skip
    ids = [f"zcam-{i:02d}" for i in range(cameras)]
    square = [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]]
    for cid in ids:
        _sql(url, "INSERT INTO cameras (id, name, main_stream_url, record_enabled)"
             " VALUES ($1, $1, 'rtsp://h/x', false)", cid)  # fmt: skip
        _sql(url, "INSERT INTO zones (id, camera_id, name, kind, polygon) VALUES ($1, $2, 'door', 'region', $3)",
             f"zone_{cid}", cid, square)  # fmt: skip
    app = create_app(settings, url)
    port = 18000 + int(time.time()) % 1000
    userver = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=userver.run, daemon=True)
    thread.start()
    while not userver.started:
        time.sleep(0.05)
    received: dict[int, float] = {}  # event seq → NOTIFY time (monotonic, the same clock in every process)

    async def run() -> dict[str, Any]:
        import multiprocessing

        listener = await connect(url)
        await listener.add_listener("heldar_events", lambda *a: received.setdefault(int(a[3]), time.monotonic()))
        # the load comes from another process, so the API (this process) has the GIL to itself
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_http_load, args=(port, rate, seconds, ids, child), daemon=True)
        proc.start()
        while not parent.poll():  # noqa: ASYNC110 (a pipe from another process, not an asyncio event)
            await asyncio.sleep(0.1)
        load = parent.recv()
        proc.join(timeout=10)
        await asyncio.sleep(2)
        rows = await listener.fetch(
            'SELECT seq, camera_id, event_type, "timestamp" FROM events'
            " WHERE event_type IN ('zone_enter', 'zone_exit')"
        )
        await listener.close()
        return {**load, "rows": [dict(r) for r in rows]}

    try:
        out = asyncio.run(run())
    finally:
        userver.should_exit = True
        thread.join(timeout=10)
    sent, stamps = out.pop("sent"), out.pop("stamps")
    # an event carries the time of the first frame of its run; the batch that confirmed it is the next one
    by_time = {(cid, at): i for (cid, i), at in stamps.items()}
    latencies = []
    for row in out.pop("rows"):
        i = by_time.get((row["camera_id"], row["timestamp"]))
        if i is not None and (row["camera_id"], i + 1) in sent and row["seq"] in received:
            latencies.append(received[row["seq"]] - sent[(row["camera_id"], i + 1)])
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None

    from actors.ingest import get_ingest

    handle = get_ingest(namespace)
    if handle is not None:
        ray.kill(handle, no_restart=True)
    return {**out, "zone_events": len(latencies), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None}  # fmt: skip


async def _post_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes) -> int:
    """One HTTP/1.1 POST on a kept-alive connection (a minimal client: the load generator must cost little)."""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


def _http_load(port: int, rate: float, seconds: float, ids: list[str], pipe: Any) -> None:
    """The load generator (run in its own process): one walking track per camera, ``rate`` batches/s, sent
    over 32 kept-alive connections."""
    sent: dict[tuple[str, int], float] = {}
    stamps: dict[tuple[str, int], datetime] = {}
    replies: list[float] = []
    errors = 0

    def body(cid: str, i: int) -> bytes:
        x = 0.5 if i % 10 < 5 else 0.1
        at = stamps[(cid, i)] = datetime.now(UTC)
        return json.dumps({"camera_id": cid, "task_type": "people", "frame_id": f"{cid}-{i}",
                           "timestamp": at.isoformat(),
                           "detections": [{"label": "person", "confidence": 0.9, "bbox": [x - 0.05, 0.3, 0.1, 0.2],
                                           "track_id": f"t{i // 10}"}]}).encode()  # fmt: skip

    async def run() -> int:
        nonlocal errors
        queue: asyncio.Queue[tuple[str, int] | None] = asyncio.Queue()

        async def worker() -> None:
            nonlocal errors
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while (job := await queue.get()) is not None:
                payload = body(*job)
                sent[job] = time.monotonic()
                if await _post_json(reader, writer, "/api/v1/ai/events", payload) != 200:
                    errors += 1
                replies.append(time.monotonic() - sent[job])
            writer.close()

        workers = [asyncio.create_task(worker()) for _ in range(32)]
        for cid in ids:  # warm-up: the API brings the ingest actor up on the first batch
            queue.put_nowait((cid, 100_000))
        await asyncio.sleep(5)
        started, n, cameras = time.monotonic(), 0, len(ids)
        while time.monotonic() - started < seconds:
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            queue.put_nowait((ids[n % cameras], n // cameras))
            n += 1
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        return n

    n = asyncio.run(run())
    replies.sort()
    reply = {f"http_reply_p{q}_ms": round(1000 * replies[min(len(replies) - 1, int(q / 100 * len(replies)))], 1)
             for q in (50, 99)} if replies else {}  # fmt: skip
    pipe.send({"batches": n, "achieved_rate": round(n / seconds, 1), "errors": errors, "sent": sent,
               "stamps": stamps, **reply})  # fmt: skip


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
    url = database_url(server, name)
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
    await create_database(server, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cameras", default="1,8,32")
    parser.add_argument("--fps", type=float, default=2.0, help="motion task fps per camera")
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--detectors", type=int, default=2)
    parser.add_argument("--ingest-rows", type=int, default=300_000)
    parser.add_argument("--http-rate", type=float, default=200.0, help="HTTP batches/s for the zone latency")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved ingest rounds (medians reported)")
    parser.add_argument("--skip-person", action="store_true")
    parser.add_argument("--ingest-only", action="store_true", help="baseline, ingest and HTTP → zone latency only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="heldar-bench-perc-"))
    pg = EmbeddedPostgres(root / "pg")
    server = pg.start()
    results: dict[str, Any] = {}
    try:
        # interleaved rounds (baseline, 1 connection, pool of 2), medians: a busy machine drifts between runs
        samples: dict[str, list[dict[str, Any]]] = {"copy_baseline": [], "ingest": [], "ingest_pool2": []}
        for n in range(args.repeat):
            samples["copy_baseline"].append(asyncio.run(bench_copy_baseline(server, args.ingest_rows, tag=str(n))))
            for key, conns in (("ingest", 1), ("ingest_pool2", 2)):
                samples[key].append(asyncio.run(bench_ingest(server, args.ingest_rows, connections=conns, tag=str(n))))
        for key, runs in samples.items():
            ordered = sorted(runs, key=lambda r: r["rows_per_s"])
            results[key] = {**ordered[len(ordered) // 2], "samples_rows_per_s": [r["rows_per_s"] for r in runs]}
        for key in ("ingest", "ingest_pool2"):  # each round against the baseline measured just before it
            ratios = [round(a["rows_per_s"] / b["rows_per_s"], 2)
                      for a, b in zip(samples[key], samples["copy_baseline"], strict=True)]  # fmt: skip
            results[key]["vs_baseline_per_round"] = ratios
            results[key]["vs_baseline"] = sorted(ratios)[len(ratios) // 2]
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        results["http_zone_latency"] = bench_http_zone_latency(server, root, rate=args.http_rate)
        if not args.ingest_only:
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
    print(json.dumps(results, indent=2, default=str))
    b, one, two = results["copy_baseline"], results["ingest"], results["ingest_pool2"]
    print(f"\n{'ingest of ' + str(b['rows']) + ' rows (median)':32} {'rows/s':>8} {'x baseline':>10}  "
          "per round (x the baseline just before)")  # fmt: skip
    print(f"{'COPY baseline (1 connection)':32} {b['rows_per_s']:>8} {1.0:>10}  {b['samples_rows_per_s']}")
    print(f"{'heldar ingest (1 connection)':32} {one['rows_per_s']:>8} {one['vs_baseline']:>10}  "
          f"{one['vs_baseline_per_round']}")  # fmt: skip
    print(f"{'heldar ingest (pool of 2)':32} {two['rows_per_s']:>8} {two['vs_baseline']:>10}  "
          f"{two['vs_baseline_per_round']}")  # fmt: skip
    z = results["http_zone_latency"]
    print(f"\nHTTP ingest → zone event at {z['achieved_rate']} batches/s: p50 {z['p50_ms']} ms, p99 {z['p99_ms']} ms "
          f"({z['zone_events']} events; HTTP reply p50 {z.get('http_reply_p50_ms')} ms, "
          f"p99 {z.get('http_reply_p99_ms')} ms)")  # fmt: skip
    if "pipeline" in results:
        rows = ([results["person_640"]] if "person_640" in results else []) + results["pipeline"]
        print(f"\n{'task':8} {'cams':>4} {'granted':>7} {'sampled/s':>9} {'analysed/s':>10} {'dev%':>6} {'dropped':>7} "
              f"{'p50 ms':>7} {'p99 ms':>7}")  # fmt: skip
        for r in rows:
            print(f"{r['task']:8} {r['cameras']:>4} {r['fps_per_camera_granted']:>7} {r['sampled_fps_total']:>9} "
                  f"{r['analysed_fps_total']:>10} {r['max_fps_deviation_pct']:>6} {r['frames_dropped']:>7} "
                  f"{r['latency_p50_ms']!s:>7} {r['latency_p99_ms']!s:>7}")  # fmt: skip


if __name__ == "__main__":
    main()
