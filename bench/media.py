"""Media-plane benchmark: 1 h clip export, snapshot latency, playback session creation, live-view latency.

    python -m bench.media [--snapshots 40] [--sessions 20] [--live-seconds 60] [--only live] [--json out.json]

Footage: 1800 segments of 2 s (one hour), fragmented MP4 written by ffmpeg with the recorder's segment flags
(640x360, 15 fps, 1 s GOP; five distinct files hard-linked in turn), indexed in an embedded PostgreSQL. All
requests go through the real app (auth off, ``TestClient``).

* **clip**: ``POST /clip`` over the whole hour: wall seconds and CPU seconds (this process + ffmpeg children).
  Baseline: the bare ``ffmpeg -f concat ... -c copy`` of the same list (what any stream-copy export costs).
* **snapshot**: ``GET /snapshot?at=`` at random instants, p50/p99 ms. Baseline: upstream's way,
  ``ffmpeg -ss OFFSET -i SEGMENT -frames:v 1 -c:v mjpeg pipe:1`` (one process per still), timed bare.
* **playback**: ``POST /playback/sessions`` over the hour (read lock on 1800 rows + playlist build), p50/p99 ms;
  and the playlist GET. Baseline: acquiring and releasing the read lock alone.

* **live**: camera → live playlist latency. One simulator camera (640x360, 15 fps, 1 s GOP, the UTC clock burnt
  in) is recorded by the recorder's own command with live view on (``build_recorder_argv`` with ``live_dir``: the
  tee of the segment output and the HLS output) and, at the same time on a second path of the same stream, by the
  baseline: bare ``ffmpeg -c copy -f hls`` with the same HLS options and nothing else. Both playlists are polled
  every 20 ms; when a part appears, its first and last pictures are found in the simulator's footage by their
  bytes (a stream copy does not change them) and the wall clock when the simulator sent that very picture is
  compared with the wall clock when the part became listed. ``newest_frame``: age of the part's last picture when
  a player can first fetch it; ``oldest_frame``: of its first picture; ``player_estimate``: a player holding 3
  parts back from the live edge (hls.js's ``liveSyncDurationCount``) sees about ``newest_frame`` + 3 part
  durations. ``newest_vs_capture_stamp``: the same against the picture's capture stamp (the RTP/RTCP time, on the
  encoder's regular frame clock, which the burnt-in clock shows to the second; it may run up to 0.5 s off the
  send time on a starved machine, so the send time is the headline). p50/p99 in ms.

JSON to stdout (or ``--json FILE``), table after.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.report import emit
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
    p.add_argument("--live-seconds", type=float, default=60.0, help="live-latency window (0: skip it)")
    p.add_argument(
        "--live-looped",
        action="store_true",
        help="live latency on the looped 1080p 4 Mbit/s field camera instead of the 640x360 test pattern",
    )
    p.add_argument("--only", choices=("live",), help="run one phase only (live needs no PostgreSQL)")
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


# --- live latency ---------------------------------------------------------------------------------------------

LIVE_POLL_S = 0.02
PLAYER_HOLD_BACK_PARTS = 3


def _vcl_key(annexb: bytes) -> bytes:
    """The slice NAL units of one picture (Annex-B), concatenated: what a stream copy leaves as it was."""
    from heldar.fakecam.codecs import H264
    from heldar.fakecam.h264 import AnnexBParser

    parser = AnnexBParser(H264)
    nals = [n for au in parser.feed(annexb) + parser.flush() for n in au]
    return b"".join(n for n in nals if H264.is_vcl(H264.nal_type(n)))


class _Footage:
    """(capture stamp, sent) wall times of the simulator's recent pictures, by their slice bytes (from its ring)."""

    def __init__(self, sim: Any, camera: str) -> None:
        self.sim = sim
        self.camera = camera
        self.by_key: dict[bytes, tuple[float, float]] = {}
        self.last_ticks = -1

    def refresh(self) -> None:
        for ticks, sent, nals in self.sim.captured_since(self.camera, self.last_ticks):
            self.by_key[b"".join(n for n in nals if 1 <= (n[0] & 0x1F) <= 5)] = (ticks / 90_000, sent)
            self.last_ticks = max(self.last_ticks, ticks)

    def times(self, key: bytes) -> tuple[float, float] | None:
        """The latest sending of these bytes (a looped clip sends each picture again every loop)."""
        self.refresh()
        return self.by_key.get(key)


def _part_pictures(path: Path) -> tuple[bytes, bytes, float] | None:
    """(first picture's slices, last picture's slices, duration s) of an MPEG-TS part, demuxed without decoding."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
    except (av.FFmpegError, OSError, IndexError):
        return None
    if not packets:
        return None
    pts = [p.pts for p in packets if p.pts is not None]
    span = float((max(pts) - min(pts)) * stream.time_base) + 1 / 15 if pts else 0.0
    return _vcl_key(bytes(packets[0])), _vcl_key(bytes(packets[-1])), span


def _watch_playlists(outputs: dict[str, Path], footage: _Footage, seconds: float) -> dict[str, list[dict[str, float]]]:
    """Poll each output's ``index.m3u8``; for every new part, when it was listed and its pictures' capture times."""
    import re

    seen: dict[str, set[str]] = {name: set() for name in outputs}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in outputs}
    primed = {name: False for name in outputs}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, folder in outputs.items():
            try:
                text = (folder / "index.m3u8").read_text()
            except OSError:
                continue
            listed = time.time()
            parts = re.findall(r"^(p\d+\.ts)$", text, re.M)
            new = [p for p in parts if p not in seen[name]]
            seen[name].update(new)
            if not primed[name]:  # the parts listed before the window opened: their listing time is unknown
                primed[name] = True
                continue
            for part in new:
                pictures = _part_pictures(folder / part)
                if pictures is None:
                    continue
                first, last, span = pictures
                t_first, t_last = footage.times(first), footage.times(last)
                if t_first is None or t_last is None:
                    continue
                samples[name].append({"listed": listed, "newest_frame_s": listed - t_last[1],
                                      "oldest_frame_s": listed - t_first[1], "part_s": span,
                                      "newest_vs_stamp_s": listed - t_last[0]})  # fmt: skip
        time.sleep(LIVE_POLL_S)
    return samples


def _latency_summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    if not samples:
        return {"parts": 0}
    newest = [s["newest_frame_s"] for s in samples]
    oldest = [s["oldest_frame_s"] for s in samples]
    part = statistics.fmean(s["part_s"] for s in samples)
    player = [n + PLAYER_HOLD_BACK_PARTS * part for n in newest]
    stamp = [s["newest_vs_stamp_s"] for s in samples]
    return {
        "parts": len(samples),
        "part_s_mean": round(part, 3),
        "newest_frame": ms(newest),
        "oldest_frame": ms(oldest),
        "player_estimate": ms(player),
        "newest_vs_capture_stamp": ms(stamp),
    }


def run_live(seconds: float, scratch: Path, looped: bool = False) -> dict[str, Any]:
    """Live latency of heldar's recorder command (tee: segments + HLS) against bare ffmpeg HLS, in one run."""
    from heldar.fakecam import FakeCamSimThread, StreamProfile
    from heldar.media.recorder_command import RecorderSpec, build_recorder_argv, live_hls_options, recorder_env
    from heldar.media.segment_names import ensure_day_dirs

    heldar_live, bare_live = scratch / "live-heldar", scratch / "live-bare"
    for folder in (heldar_live, bare_live):
        folder.mkdir(parents=True)
    procs: list[subprocess.Popen[bytes]] = []
    with FakeCamSimThread(port=0, profile=StreamProfile(looped=True) if looped else None) as sim:
        sim.add_camera("lv")
        sim.add_camera("lvbare")
        camera_dir = scratch / "rec" / "lv"
        ensure_day_dirs(camera_dir, datetime.now(UTC))
        spec = RecorderSpec(input_url=sim.url("lv"), camera_dir=camera_dir, run_id="lv", segment_seconds=10,
                            live_dir=heldar_live)  # fmt: skip
        argv = build_recorder_argv(spec, ffmpeg_exe())
        baseline = RecorderSpec(input_url=sim.url("lvbare"), camera_dir=camera_dir, run_id="lvb", live_dir=bare_live)
        bare = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "warning", "-rtsp_transport", "tcp",
                "-i", sim.url("lvbare"), "-map", "0:v", "-c", "copy", "-an", "-f", "hls"]  # fmt: skip
        for key, value in live_hls_options(baseline):  # the same HLS options, without the tee and the segments
            bare += [f"-{key}", value]
        bare.append(os.fspath(bare_live / "index.m3u8"))
        try:
            for cmd in (argv, bare):
                procs.append(subprocess.Popen(cmd, env=recorder_env(), stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            footage = _Footage(sim, "lv")  # both paths send the one shared stream
            time.sleep(4.0)  # connect, first parts
            footage.refresh()
            samples = _watch_playlists({"heldar": heldar_live, "bare": bare_live}, footage, seconds)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return {
        "seconds": seconds,
        "camera": "1920x1080 15 fps 1 s GOP H.264 4 Mbit/s (looped clip)"
        if looped
        else "640x360 15 fps 1 s GOP H.264 (simulator, clock burnt in)",
        "heldar_recorder_command": _latency_summary(samples["heldar"]),
        "baseline_bare_ffmpeg_hls": _latency_summary(samples["bare"]),
        "samples": samples,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.only == "live":
        scratch = Path(tempfile.mkdtemp(prefix="heldar-bench-media-"))
        result: dict[str, Any] = {"args": vars(args), "started_at": datetime.now(UTC).isoformat(),
                                  "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()}  # fmt: skip
        try:
            print("live latency ...", file=sys.stderr)
            result["live"] = run_live(args.live_seconds, scratch, args.live_looped)
            result["load_avg_end"] = os.getloadavg()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return result
    return _run_all(args)


def _run_all(args: argparse.Namespace) -> dict[str, Any]:
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
        if args.live_seconds > 0:
            print("live latency ...", file=sys.stderr)
            result["live"] = run_live(args.live_seconds, scratch / "live", args.live_looped)
        result["load_avg_end"] = os.getloadavg()
    finally:
        pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _live_table(live: dict[str, Any]) -> list[str]:
    lines = [f"live latency ({live['camera']}, {live['seconds']:g} s):"]
    rows = (("heldar recorder (tee)", "heldar_recorder_command"), ("bare ffmpeg hls", "baseline_bare_ffmpeg_hls"))
    for label, key in rows:
        r = live[key]
        if not r.get("parts"):
            lines.append(f"  {label}: no parts measured")
            continue
        lines.append(
            f"  {label:22} parts {r['parts']:3} ({r['part_s_mean']} s)  newest frame p50"
            f" {r['newest_frame']['p50_ms']} ms p99 {r['newest_frame']['p99_ms']} ms"
            f" | oldest frame p50 {r['oldest_frame']['p50_ms']} ms"
            f" p99 {r['oldest_frame']['p99_ms']} ms | player (3 parts back) p50 {r['player_estimate']['p50_ms']} ms"
            f" p99 {r['player_estimate']['p99_ms']} ms"
        )
    return lines


def table(result: dict[str, Any]) -> str:
    if "clip" not in result:
        return "\n".join([f"load={result['load_avg']} -> {result.get('load_avg_end')}", *_live_table(result["live"])])
    c, s, p = result["clip"], result["snapshot"], result["playback"]
    b = c["baseline_bare_ffmpeg"]
    live = _live_table(result["live"]) if "live" in result else []
    return "\n".join([
        f"load={result['load_avg']} -> {result.get('load_avg_end')}",
        f"clip 1 h ({c['segments']} segments, {c['size_bytes'] / 1e6:.0f} MB): wall {c['wall_s']} s, CPU {c['cpu_s']} s"
        f"   | bare ffmpeg concat: wall {b['wall_s']} s, CPU {b['cpu_s']} s",
        f"snapshot at=: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms   | ffmpeg -ss per still: p50 "
        f"{s['baseline_ffmpeg_ss_per_still']['p50_ms']} ms, p99 {s['baseline_ffmpeg_ss_per_still']['p99_ms']} ms",
        f"playback session 1 h: create p50 {p['create']['p50_ms']} ms, p99 {p['create']['p99_ms']} ms;"
        f" playlist GET p50 {p['playlist_get']['p50_ms']} ms ({p['parts']} parts)   | read lock alone p50 "
        f"{p['baseline_read_lock_only']['p50_ms']} ms",
        *live,
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = parse_args(argv)
    result = run(args)
    emit(result, table(result), args.json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
