"""Media-plane benchmark: 1 h clip export, snapshot latency, playback session creation.

    python -m bench.media [--snapshots 40] [--sessions 20] [--json out.json]

Footage: 1800 segments of 2 s (one hour), fragmented MP4 written by ffmpeg with the recorder's segment flags
(640x360, 15 fps, 1 s GOP; five distinct files hard-linked in turn), indexed in an embedded PostgreSQL. All
requests go through the real app (auth off, ``TestClient``).

* **clip**: ``POST /clip`` over the whole hour: wall seconds and CPU seconds (this process + ffmpeg children).
  Baseline: the bare ``ffmpeg -f concat ... -c copy`` of the same list (what any stream-copy export costs).
* **snapshot**: ``GET /snapshot?at=`` at random instants, p50/p99 ms. Baseline: upstream's way,
  ``ffmpeg -ss OFFSET -i SEGMENT -frames:v 1 -c:v mjpeg pipe:1`` (one process per still), timed bare.
* **playback**: ``POST /playback/sessions`` over the hour (read lock on 1800 rows + playlist build), p50/p99 ms;
  and the playlist GET. Baseline: acquiring and releasing the read lock alone.

Live latency is not measured here (see README, media plane). JSON to stdout (or ``--json FILE``), table after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from heldar.ids import new_id
from heldar.media import clips
from heldar.media.binary import ffmpeg_exe
from heldar.media.probe import probe_segment
from heldar.media.recorder_command import FRAGMENTED_MP4_FLAGS
from heldar.media.segment_names import day_dir_name, segment_name
from heldar.store.database import EmbeddedPostgres, connect, create_pool
from heldar.store.migrate import migrate
from heldar.store.storage import acquire_read_lock, release_read_lock

logger = logging.getLogger("bench.media")

SEGMENTS = 1800
SEGMENT_S = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.media", description=__doc__.split("\n\n")[0])
    p.add_argument("--snapshots", type=int, default=40)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--json", dest="json_path", default=None)
    return p.parse_args(argv)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(pct(samples, 0.5) * 1000, 2),
        "p99_ms": round(pct(samples, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
    }


def cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def make_sources(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc2=size=640x360:rate=15", "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-g", "15",
         "-bf", "0", "-pix_fmt", "yuv420p", "-f", "segment", "-segment_time", str(SEGMENT_S), "-segment_format", "mp4",
         "-segment_format_options", f"movflags={FRAGMENTED_MP4_FLAGS}", "-reset_timestamps", "1",
         str(folder / "src%d.mp4")],
        check=True, timeout=120,
    )  # fmt: skip
    return sorted(folder.glob("src*.mp4"))[:5]


async def load(url: str, root: Path, sources: list[Path], start: datetime) -> None:
    conn = await connect(url)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO cameras (id, name, main_stream_url) VALUES ('cam1', 'cam1', 'rtsp://127.0.0.1:9/x')"
        )
        await conn.execute("INSERT INTO camera_status (camera_id) VALUES ('cam1')")
        probes = [probe_segment(p) for p in sources]
        records = []
        t = start
        for i in range(SEGMENTS):
            src, probe = sources[i % len(sources)], probes[i % len(sources)]
            assert probe is not None
            name = segment_name(t, f"b{i}")
            folder = root / "cam1" / day_dir_name(t)
            folder.mkdir(parents=True, exist_ok=True)
            os.link(src, folder / name)
            end = t + timedelta(seconds=probe.duration_s)
            records.append((new_id("seg"), "cam1", name, t, end, probe.duration_s, "h264", probe.size_bytes))
            t = end
        await conn.copy_records_to_table(
            "segments", records=records,
            columns=["id", "camera_id", "file_name", "start_time", "end_time", "duration_s", "codec", "size_bytes"],
        )  # fmt: skip
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from config import load_settings

    scratch = Path(tempfile.mkdtemp(prefix="heldar-bench-media-"))
    os.chmod(scratch, 0o755)
    pg = EmbeddedPostgres(scratch / "pg")
    result: dict[str, Any] = {"args": vars(args), "started_at": datetime.now(UTC).isoformat(),
                              "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()}  # fmt: skip
    try:
        url = pg.start()
        settings = load_settings(data_dir=scratch / "data", auth_enabled=False, webhooks_enabled=False)
        print("footage ...", file=sys.stderr)
        sources = make_sources(scratch / "src")
        start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
        asyncio.run(load(url, settings.recordings_root, sources, start))
        end = start + timedelta(seconds=3600)
        iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
        with TestClient(create_app(settings, url)) as client:
            print("clip ...", file=sys.stderr)
            c0, w0 = cpu(), time.perf_counter()
            r = client.post("/api/v1/cameras/cam1/clip", json={"from": iso(start), "to": iso(end)})
            wall, used = time.perf_counter() - w0, cpu() - c0
            assert r.status_code == 201, r.text
            clip = r.json()

            async def plan() -> clips.ClipPlan:
                pool = await create_pool(url, max_size=2)
                try:
                    rows = await pool.fetch(
                        "SELECT id, file_name, start_time, end_time FROM segments ORDER BY start_time"
                    )
                    return clips.plan_clip([dict(x) for x in rows], start, end, settings.recordings_root / "cam1")
                finally:
                    await pool.close()

            bare_plan = asyncio.run(plan())
            listing = scratch / "bare.ffconcat"
            listing.write_text(clips.concat_list(bare_plan.pieces))
            c0, w0 = cpu(), time.perf_counter()
            subprocess.run(clips.clip_argv(ffmpeg_exe(), listing, scratch / "bare.mp4"), check=True, timeout=300)
            bare_wall, bare_cpu = time.perf_counter() - w0, cpu() - c0
            result["clip"] = {
                "seconds": clip["covered_seconds"], "segments": clip["segment_count"], "size_bytes": clip["size_bytes"],
                "wall_s": round(wall, 3), "cpu_s": round(used, 3),
                "baseline_bare_ffmpeg": {"wall_s": round(bare_wall, 3), "cpu_s": round(bare_cpu, 3)},
            }  # fmt: skip

            print("snapshots ...", file=sys.stderr)
            rnd = random.Random(7)
            instants = [start + timedelta(seconds=rnd.uniform(0, 3590)) for _ in range(args.snapshots)]
            took = []
            for at in instants:
                w0 = time.perf_counter()
                r = client.get("/api/v1/cameras/cam1/snapshot", params={"at": iso(at)})
                took.append(time.perf_counter() - w0)
                assert r.status_code == 200, r.text
            bare = []
            for at in instants:
                offset = (at - start).total_seconds() % (SEGMENT_S - 0.2)
                src = sources[rnd.randrange(len(sources))]
                w0 = time.perf_counter()
                subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-ss", f"{offset:.3f}",
                                "-i", str(src), "-frames:v", "1", "-q:v", "3", "-f", "image2", "-c:v", "mjpeg",
                                "pipe:1"], check=True, capture_output=True, timeout=30)  # fmt: skip
                bare.append(time.perf_counter() - w0)
            result["snapshot"] = {**ms(took), "baseline_ffmpeg_ss_per_still": ms(bare)}

            print("playback sessions ...", file=sys.stderr)
            created, playlists = [], []
            for _ in range(args.sessions):
                w0 = time.perf_counter()
                r = client.post("/api/v1/cameras/cam1/playback/sessions", json={"from": iso(start), "to": iso(end)})
                created.append(time.perf_counter() - w0)
                assert r.status_code == 201, r.text
                w0 = time.perf_counter()
                assert client.get(r.json()["playlist_url"]).status_code == 200
                playlists.append(time.perf_counter() - w0)
                client.delete(f"/api/v1/playback/sessions/{r.json()['id']}")

            async def locks() -> list[float]:
                pool = await create_pool(url, max_size=2)
                out = []
                try:
                    for _ in range(args.sessions):
                        w0 = time.perf_counter()
                        lock = await acquire_read_lock(pool, "cam1", holder="bench", start=start, end=end)
                        await release_read_lock(pool, lock.id)
                        out.append(time.perf_counter() - w0)
                finally:
                    await pool.close()
                return out

            result["playback"] = {
                "create": ms(created),
                "playlist_get": ms(playlists),
                "parts": r.json()["part_count"],
                "baseline_read_lock_only": ms(asyncio.run(locks())),
            }
        result["load_avg_end"] = os.getloadavg()
    finally:
        pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def table(result: dict[str, Any]) -> str:
    c, s, p = result["clip"], result["snapshot"], result["playback"]
    b = c["baseline_bare_ffmpeg"]
    return "\n".join([
        f"load={result['load_avg']} -> {result.get('load_avg_end')}",
        f"clip 1 h ({c['segments']} segments, {c['size_bytes'] / 1e6:.0f} MB): wall {c['wall_s']} s, CPU {c['cpu_s']} s"
        f"   | bare ffmpeg concat: wall {b['wall_s']} s, CPU {b['cpu_s']} s",
        f"snapshot at=: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms   | ffmpeg -ss per still: p50 "
        f"{s['baseline_ffmpeg_ss_per_still']['p50_ms']} ms, p99 {s['baseline_ffmpeg_ss_per_still']['p99_ms']} ms",
        f"playback session 1 h: create p50 {p['create']['p50_ms']} ms, p99 {p['create']['p99_ms']} ms;"
        f" playlist GET p50 {p['playlist_get']['p50_ms']} ms ({p['parts']} parts)   | read lock alone p50 "
        f"{p['baseline_read_lock_only']['p50_ms']} ms",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2, default=str)
    if args.json_path:
        Path(args.json_path).write_text(text, encoding="utf-8")
        print(table(result))
    else:
        print(text)
        print(table(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
