"""Storage benchmark: window reads and retention sweeps at a million segment rows, recorder poll cost.

    python -m bench.storage [--rows 1000000] [--files 100000] [--queries 200] [--json out.json]

* **reads**: ``/timeline``, ``/gaps``, ``/segments`` over random 24 h windows, through the real app (auth off)
  at ``--rows`` segment rows (10 cameras, 60 s segments: the default segment length); baseline: the window
  SQL as it was before migration 0008 (no lower bound on ``start_time``), timed at the store level next to
  the current store functions on the same windows.
* **sweep**: a full sweep with nothing due (age/quota/cap/floor/rows), the orphan + vanished-file pass over a
  camera with ``--files`` real (empty) files, and a sweep that must delete 10 % of that camera (quota): wall
  time and the Python heap peak (tracemalloc, separate run). Baseline: the bare I/O any sweep needs (one
  grouped scan of ``segments``; a listing of the camera's files plus reading its indexed names).
* **poll**: CPU of the recorder's per-second listing (``list_segment_files`` with the current run's filter and
  day folders, as ``CameraRecorder._one_run`` calls it) with 10 k vs 100 k segments kept; baseline: the flat
  layout listing of before (whole camera folder every second).

JSON with every figure goes to stdout (or ``--json FILE``); a short table follows on stderr (stdout when
``--json`` names a file). Everything runs in a temporary directory that is removed; PostgreSQL stops on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.report import emit
from heldar.ids import new_id
from heldar.media.segment_names import day_dir_name, list_segment_files, run_total_bytes, segment_name
from heldar.storage.sweeper import Outcome, RetentionSweeper, SweepConfig
from heldar.store import recording as recording_store
from heldar.store import recording_reads
from heldar.store.database import EmbeddedPostgres, create_pool
from heldar.store.migrate import migrate

logger = logging.getLogger("bench.storage")

CAMERAS = 10
SEGMENT_S = 60
FILE_CAMERA = "c00"
COPY_COLUMNS = ["id", "camera_id", "file_name", "start_time", "end_time", "duration_s", "codec", "width", "height",
                "fps", "size_bytes", "source"]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="segment rows in total (10 cameras)")
    p.add_argument("--files", type=int, default=100_000, help="real files for one camera (<= rows / 10)")
    p.add_argument("--queries", type=int, default=200, help="requests per read route")
    p.add_argument("--polls", type=int, default=100, help="recorder polls per layout")
    p.add_argument("--json", dest="json_path", help="write the JSON here instead of stdout")
    return p.parse_args(argv)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {
        "p50_ms": round(pct(ms, 0.5), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def make_files(folder_of: Callable[[datetime], Path], starts: list[datetime], token: str) -> list[str]:
    names = []
    made: set[Path] = set()
    for i, s in enumerate(starts):
        folder = folder_of(s)
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        name = segment_name(s, f"{token}{i}")
        os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))
        names.append(name)
    return names


async def load_rows(pool: Any, root: Path, rows: int, files: int, now: datetime) -> dict[str, Any]:
    per_camera = rows // CAMERAS
    for c in range(CAMERAS):
        cid = f"c{c:02d}"
        await pool.execute(
            "INSERT INTO cameras (id, name, main_stream_url, retention_hours, segment_seconds)"
            " VALUES ($1, $1, 'rtsp://127.0.0.1:1/x', 43800, $2)",
            cid,
            SEGMENT_S,
        )
        await pool.execute("INSERT INTO camera_status (camera_id, state) VALUES ($1, 'recording')", cid)
    t0 = time.perf_counter()
    file_names: list[str] = []
    for c in range(CAMERAS):
        cid = f"c{c:02d}"
        first = now - timedelta(seconds=per_camera * SEGMENT_S)
        starts = [first + timedelta(seconds=i * SEGMENT_S) for i in range(per_camera)]
        if cid == FILE_CAMERA:
            # The newest ``files`` of this camera have real files in their day folders (rows keep these names).
            with_files = starts[-files:]
            cam_dir = root / cid
            file_names = make_files(lambda s, d=cam_dir: d / day_dir_name(s), with_files, "run")
            names = [f"nofile{i}" for i in range(per_camera - files)] + file_names
        else:
            names = [segment_name(s, f"r{i}") for i, s in enumerate(starts)]
        records = (
            (new_id("seg"), cid, names[i], s, s + timedelta(seconds=SEGMENT_S), float(SEGMENT_S), "h264",
             640, 360, 15.0, 250_000, "live")
            for i, s in enumerate(starts)
        )  # fmt: skip
        await pool.copy_records_to_table(
            "segments",
            records=records,
            columns=COPY_COLUMNS,
        )
    copy_s = time.perf_counter() - t0
    # The rows without files of the file camera would read as vanished: keep them out of its orphan pass.
    await pool.execute("DELETE FROM segments WHERE camera_id = $1 AND file_name LIKE 'nofile%'", FILE_CAMERA)
    await pool.execute("VACUUM ANALYZE segments")
    count = await pool.fetchval("SELECT count(*) FROM segments")
    return {"rows": int(count), "copy_s": round(copy_s, 2), "file_camera_files": len(file_names)}


# --- reads ----------------------------------------------------------------------------------------


async def old_window_coverage(pool: Any, camera_id: str, start: datetime, end: datetime) -> int:
    """The window scan as it was before 0008 (no lower bound on start_time), for the baseline."""
    count, cursor = 0, None
    while True:
        rows = await pool.fetch(
            "SELECT id, start_time, end_time FROM segments WHERE camera_id = $1"
            " AND end_time >= $2 AND start_time <= $3"
            " AND ($4::timestamptz IS NULL OR (start_time, id) > ($4::timestamptz, $5::text))"
            " ORDER BY start_time, id LIMIT $6",
            camera_id, start, end, cursor[0] if cursor else None, cursor[1] if cursor else None, 5000,
        )  # fmt: skip
        count += len(rows)
        if len(rows) < 5000:
            return count
        cursor = (rows[-1]["start_time"], rows[-1]["id"])


async def old_list_segments(pool: Any, camera_id: str, start: datetime, end: datetime) -> int:
    rows = await pool.fetch(
        "SELECT id, camera_id, file_name, start_time, end_time, duration_s, codec, width, height, fps, size_bytes,"
        " source, created_at FROM segments WHERE camera_id = $1 AND ($2::timestamptz IS NULL OR end_time >= $2)"
        " AND ($3::timestamptz IS NULL OR start_time <= $3) ORDER BY start_time LIMIT $4",
        camera_id, start, end, 500,
    )  # fmt: skip
    return len(rows)


async def timed(job: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await job()
    return time.perf_counter() - t


def windows(n: int, now: datetime, span_days: float) -> list[tuple[str, datetime, datetime]]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        cid = f"c{rng.randrange(1, CAMERAS):02d}"
        back = rng.uniform(1, span_days - 1)
        start = now - timedelta(days=back)
        out.append((cid, start, start + timedelta(hours=24)))
    return out


async def store_reads(pool: Any, wins: list[tuple[str, datetime, datetime]]) -> dict[str, Any]:
    res: dict[str, list[float]] = {"coverage_old": [], "coverage_new": [], "segments_old": [], "segments_new": []}
    for cid, s, e in wins:
        jobs = {
            "coverage_old": lambda c=cid, a=s, b=e: old_window_coverage(pool, c, a, b),
            "coverage_new": lambda c=cid, a=s, b=e: recording_reads.window_coverage(pool, c, a, b),
            "segments_old": lambda c=cid, a=s, b=e: old_list_segments(pool, c, a, b),
            "segments_new": lambda c=cid, a=s, b=e: recording_store.list_segments(pool, c, a, b, 500),
        }
        for key, job in jobs.items():
            res[key].append(await timed(job))
    return {k: summary_ms(v) for k, v in res.items()}


def api_reads(url: str, data_dir: Path, root: Path, wins: list[tuple[str, datetime, datetime]]) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from config import load_settings

    settings = load_settings(auth_enabled=False, data_dir=data_dir, recordings_dir=root, webhooks_enabled=False)
    out: dict[str, Any] = {}
    with TestClient(create_app(settings, url)) as client:
        for route in ("timeline", "gaps", "segments"):
            samples, sizes = [], []
            for i, (cid, s, e) in enumerate(wins):
                params = {"from": s.isoformat(), "to": e.isoformat()}  # /segments: its default limit (500)
                t = time.perf_counter()
                r = client.get(f"/api/v1/cameras/{cid}/{route}", params=params)
                elapsed = time.perf_counter() - t
                assert r.status_code == 200, r.text
                if i >= 5:  # warm-up
                    samples.append(elapsed)
                body = r.json()
                sizes.append(len(body) if isinstance(body, list) else body.get("segment_count", body.get("gap_count")))
            out[route] = {**summary_ms(samples), "items_per_response": statistics.median(sizes)}
    return out


# --- sweeps ---------------------------------------------------------------------------------------


async def measure(job: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    t = time.perf_counter()
    result = await job()
    wall = time.perf_counter() - t
    return {"wall_s": round(wall, 3), "result": result}


async def heap_peak(job: Callable[[], Awaitable[Any]]) -> float:
    tracemalloc.start()
    try:
        await job()
        return round(tracemalloc.get_traced_memory()[1] / 1024 / 1024, 2)
    finally:
        tracemalloc.stop()


async def sweeps(pool: Any, root: Path, files: int) -> dict[str, Any]:
    config = SweepConfig(recordings_root=root, max_recordings_gb=1e6, min_free_disk_gb=0)
    sweeper = RetentionSweeper(pool, config, "bench")
    out: dict[str, Any] = {}

    async def grouped() -> Any:
        return len(await pool.fetch("SELECT camera_id, count(*), sum(size_bytes) FROM segments GROUP BY camera_id"))

    out["baseline_grouped_scan"] = await measure(grouped)

    async def noop() -> Any:
        o = await sweeper.sweep(orphans=False)
        return {"ok": o["ok"], "deleted": o["deleted"], "errors": o["errors"]}

    out["sweep_nothing_due"] = await measure(noop)
    out["sweep_nothing_due"]["heap_peak_mb"] = await heap_peak(noop)

    async def listing() -> Any:
        names = await asyncio.to_thread(list_segment_files, root / FILE_CAMERA)
        indexed = await pool.fetch("SELECT id, file_name FROM segments WHERE camera_id = $1", FILE_CAMERA)
        return {"files": len(names), "rows": len(indexed)}

    out["baseline_list_and_names"] = await measure(listing)

    async def orphan_pass() -> Any:
        outcome = Outcome(started_at=datetime.now(UTC), leader="bench")
        await sweeper._camera_files(outcome, FILE_CAMERA, root / FILE_CAMERA)
        return {k: dict(v) for k, v in outcome.deleted.items()}

    out["orphan_pass_files"] = await measure(orphan_pass)
    out["orphan_pass_files"]["heap_peak_mb"] = await heap_peak(orphan_pass)

    total = int(await pool.fetchval("SELECT sum(size_bytes) FROM segments WHERE camera_id = $1", FILE_CAMERA))
    await pool.execute("UPDATE cameras SET storage_quota_bytes = $2 WHERE id = $1", FILE_CAMERA, int(total * 0.9))

    async def quota() -> Any:
        o = await sweeper.sweep(orphans=False)
        return {"deleted": o["deleted"], "errors": o["errors"]}

    out["sweep_delete_10pct_of_file_camera"] = await measure(quota)
    return out


# --- recorder poll ----------------------------------------------------------------------------------


def poll_cpu(camera_dir: Path, run_id: str, days: list[str] | None, polls: int) -> dict[str, float]:
    suffix = f"_{run_id}.mp4"

    def this_run(name: str) -> bool:
        return name.endswith(suffix)

    t = time.process_time()
    w = time.perf_counter()
    for _ in range(polls):
        files = list_segment_files(camera_dir, this_run, days)
        run_total_bytes(files, run_id)
    cpu = (time.process_time() - t) / polls
    wall = (time.perf_counter() - w) / polls
    return {"cpu_ms_per_poll": round(cpu * 1000, 3), "wall_ms_per_poll": round(wall * 1000, 3),
            "core_percent_at_1hz": round(cpu * 100, 3)}  # fmt: skip


def layout(root: Path, name: str, kept: int, segment_s: int, dated: bool, now: datetime) -> tuple[Path, str]:
    """``kept`` files of older runs ending now, plus 3 files of the current run ``cur``."""
    cam = root / name
    first = now - timedelta(seconds=(kept + 3) * segment_s)
    starts = [first + timedelta(seconds=i * segment_s) for i in range(kept + 3)]
    folder_of = (lambda s: cam / day_dir_name(s)) if dated else (lambda s: cam)
    make_files(folder_of, starts[:kept], "old")
    for i, s in enumerate(starts[kept:]):
        folder = folder_of(s)
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / segment_name(s, "cur"), os.O_CREAT | os.O_WRONLY, 0o644))
        del i
    return cam, "cur"


def polls(root: Path, polls_n: int, now: datetime) -> dict[str, Any]:
    today = day_dir_name(now)
    out: dict[str, Any] = {}
    for seg_s in (60, 2):
        for kept in (10_000, 100_000):
            flat_cam, run = layout(root / "poll", f"flat{seg_s}s{kept}", kept, seg_s, False, now)
            dated_cam, _ = layout(root / "poll", f"dated{seg_s}s{kept}", kept, seg_s, True, now)
            out[f"{seg_s}s_{kept}"] = {
                "baseline_flat": poll_cpu(flat_cam, run, None, polls_n),
                "day_folders": poll_cpu(dated_cam, run, [today], polls_n),
                "files_in_todays_folder": len(os.listdir(dated_cam / today)),
            }
            shutil.rmtree(flat_cam)
            shutil.rmtree(dated_cam)
    return out


# --- main -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="heldar-bench-storage-"))
    os.chmod(scratch, 0o755)
    pg = EmbeddedPostgres(scratch / "pg")
    result: dict[str, Any] = {"args": vars(args), "started_at": datetime.now(UTC).isoformat(),
                              "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()}  # fmt: skip
    try:
        url = pg.start()
        root = scratch / "recordings"
        root.mkdir()
        now = datetime.now(UTC).replace(microsecond=0)

        async def prepare() -> dict[str, Any]:
            from heldar.store.database import connect

            conn = await connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            pool = await create_pool(url, max_size=4)
            try:
                return await load_rows(pool, root, args.rows, min(args.files, args.rows // CAMERAS), now)
            finally:
                await pool.close()

        print("loading rows and files ...", file=sys.stderr)
        result["data"] = asyncio.run(prepare())
        span_days = (args.rows // CAMERAS) * SEGMENT_S / 86400
        wins = windows(args.queries, now, span_days)

        async def reads() -> dict[str, Any]:
            pool = await create_pool(url, max_size=2)
            try:
                return await store_reads(pool, wins)
            finally:
                await pool.close()

        print("reads ...", file=sys.stderr)
        result["store_reads"] = asyncio.run(reads())
        result["api_reads"] = api_reads(url, scratch / "data", root, wins)

        async def sweep_all() -> dict[str, Any]:
            pool = await create_pool(url, max_size=4)
            try:
                return await sweeps(pool, root, args.files)
            finally:
                await pool.close()

        print("sweeps ...", file=sys.stderr)
        result["sweeps"] = asyncio.run(sweep_all())
        print("recorder polls ...", file=sys.stderr)
        result["polls"] = polls(scratch, args.polls, now)
        result["load_avg_end"] = os.getloadavg()
    finally:
        pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"rows={result['data']['rows']} files={result['data']['file_camera_files']} "
             f"load={result['load_avg']} -> {result.get('load_avg_end')}"]  # fmt: skip
    lines.append("reads over 24 h windows (ms)            p50      p99")
    for route, v in result["api_reads"].items():
        lines.append(f"  API /{route:<33} {v['p50_ms']:>7.2f}  {v['p99_ms']:>7.2f}   ({v['items_per_response']} items)")
    for key, v in result["store_reads"].items():
        lines.append(f"  store {key:<32} {v['p50_ms']:>7.2f}  {v['p99_ms']:>7.2f}")
    lines.append("sweeps                                   wall s   heap MB")
    for key, v in result["sweeps"].items():
        lines.append(f"  {key:<38} {v['wall_s']:>7.3f}  {v.get('heap_peak_mb', ''):>7}")
    lines.append("recorder poll (CPU ms per poll)          flat(before)  day folders  files today")
    for key, v in result["polls"].items():
        lines.append(f"  {key:<38} {v['baseline_flat']['cpu_ms_per_poll']:>10.3f}  "
                     f"{v['day_folders']['cpu_ms_per_poll']:>11.3f}  {v['files_in_todays_folder']:>11}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = parse_args(argv)
    result = run(args)
    emit(result, table(result), args.json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
