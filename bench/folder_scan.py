"""What a recorder pays to find its files as the day's footage piles up: folder listings against the folder watch.

    python -m bench.folder_scan [--cameras 8] [--files 0,8640] [--seconds 60] [--warmup 12] [--json out.json]

A benchmark with fresh folders hides a cost that a recorder left alone for a day pays: each listing reads the whole
day folder (8 640 files a day at 10 s segments, 1 440 at 60 s), and the indexer re-stats two days of footage every
minute. This runs ``--cameras`` real recorders (``CameraRecorder`` with real ffmpeg against the simulator, which
runs in a process of its own) in this process, without Ray or a database: the sink answers that the prefilled files
are indexed, as the database would. For each ``--files`` K, today's and yesterday's folder of every camera hold K
files of an earlier run first. Each K is measured with the folder watch off (``watch_folders=False``: the recorder
lists, as before) and on (inotify), in that order, in the same run: the first is the baseline.

Reported per camera: the recorder's CPU in ms per second (this process's user + system, the ffmpeg children apart),
and its folder listings per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.fleet import start_simulator
from bench.report import emit
from heldar.media.segment_names import day_dir_name, segment_name
from heldar.models.cameras import Camera
from heldar.recording import camera_recorder
from heldar.recording.camera_recorder import CameraRecorder, RecorderOptions
from heldar.recording.records import RecordingBatch

SEGMENT_S = 10


class PrefilledSink:
    """The database's answers for the prefilled footage (already indexed); written batches are only counted."""

    def __init__(self, indexed: dict[str, int]) -> None:
        self.indexed = indexed
        self.segments = 0

    async def write(self, batch: RecordingBatch) -> None:
        self.segments += len(batch.segments)

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]:
        return {n: self.indexed[n] for n in file_names if n in self.indexed}


def prefill(camera_dir: Path, files: int, now: datetime) -> dict[str, int]:
    """``files`` one-byte files of an earlier run in today's and in yesterday's folder (names a segment apart)."""
    names: dict[str, int] = {}
    for day in (now - timedelta(days=1), now):
        folder = camera_dir / day_dir_name(day)
        folder.mkdir(parents=True, exist_ok=True)
        midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
        for i in range(files):
            name = segment_name(midnight + timedelta(seconds=SEGMENT_S * i), "old")
            (folder / name).write_bytes(b"x")
            names[name] = 1
    return names


class CountedListings:
    def __init__(self) -> None:
        self.calls = 0
        self._real = camera_recorder.list_segment_files

    def __enter__(self) -> CountedListings:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return self._real(*args, **kwargs)

        camera_recorder.list_segment_files = counted  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        camera_recorder.list_segment_files = self._real  # type: ignore[assignment]


async def measure(port: int, cameras: int, files: int, watch: bool, warmup_s: float, seconds: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="heldar-bench-scan-"))
    now = datetime.now(UTC)
    try:
        recorders = []
        for i in range(cameras):
            cid = f"cam{i + 1}"
            sink = PrefilledSink(await asyncio.to_thread(prefill, root / cid, files, now))
            camera = Camera(id=cid, name=cid, main_stream_url=f"rtsp://127.0.0.1:{port}/{cid}",
                            segment_seconds=SEGMENT_S)  # fmt: skip
            recorders.append(CameraRecorder(camera, RecorderOptions(recordings_root=root, watch_folders=watch), sink))
        with CountedListings() as listings:
            tasks = [asyncio.create_task(r.run()) for r in recorders]
            await asyncio.sleep(warmup_s)
            recording = sum(1 for r in recorders if r.state == "recording")
            calls0, t0, cpu0 = listings.calls, time.monotonic(), os.times()
            await asyncio.sleep(seconds)
            calls1, t1, cpu1 = listings.calls, time.monotonic(), os.times()
            for r in recorders:
                r.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        window = t1 - t0
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        return {
            "files_per_day_folder": files,
            "folder_watch": watch,
            "cameras": cameras,
            "recording": recording,
            "window_s": round(window, 1),
            "recorder_cpu_ms_per_camera_s": round(1000 * cpu / window / cameras, 3),
            "listings_per_camera_minute": round(60 * (calls1 - calls0) / window / cameras, 2),
            "segments_indexed": sum(r.sink.segments for r in recorders),  # type: ignore[attr-defined]
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--files", default="0,8640", help="files per day folder, comma-separated (8640 = a day at 10 s)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=12.0)
    p.add_argument("--json", dest="json_path")
    args = p.parse_args(argv)
    sim, port = start_simulator(args.cameras)
    rows = []
    try:
        for files in [int(f) for f in args.files.split(",")]:
            for watch in (False, True):
                row = asyncio.run(measure(port, args.cameras, files, watch, args.warmup, args.seconds))
                rows.append(row)
                print(f"files={files} watch={watch}: {row['recorder_cpu_ms_per_camera_s']} ms/s per camera, "
                      f"{row['listings_per_camera_minute']} listings/min", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        sim.terminate()
        sim.wait(10)
    for row in rows:
        base = next(
            r for r in rows if r["files_per_day_folder"] == row["files_per_day_folder"] and not r["folder_watch"]
        )
        row["cpu_vs_listing"] = round(row["recorder_cpu_ms_per_camera_s"] / base["recorder_cpu_ms_per_camera_s"], 3)
    result = {"bench": "folder_scan", "segment_seconds": SEGMENT_S, "load_avg": os.getloadavg(), "rows": rows}
    lines = ["| files per day folder | finding files | recorder ms/s per camera | vs listing | listings/min |",
             "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['files_per_day_folder']} | {'folder watch' if r['folder_watch'] else 'listing (baseline)'} | "
              f"{r['recorder_cpu_ms_per_camera_s']} | {r['cpu_vs_listing']}x | {r['listings_per_camera_minute']} |"
              for r in rows]  # fmt: skip
    emit(result, "\n".join(lines), args.json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
