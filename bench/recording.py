"""Recording benchmark: heldar vs bare ffmpeg on the same simulated cameras, same run.

    python -m bench.recording [--cameras 1,8,32] [--seconds 30] [--latency-runs 5] [--json out.json]
                              [--skip-latency] [--skip-overhead]

Overhead phase (per N; segments of ``--overhead-segment-seconds``, default 10 s): CPU seconds (user +
system) and PSS/RSS of N bare ffmpeg processes running exactly heldar's recorder argv, then of heldar
recording the same N simulator paths (camera actor processes + their ffmpeg, and the supervisor), over the
same warm-up and window. Latency phase (``--latency-segment-seconds``, default 2 s): drop-to-resume,
stall-to-restart, SIGKILL-to-recording, ``--latency-runs`` samples each.

JSON with every raw sample goes to stdout (or ``--json FILE``); a short table follows on stderr (on stdout
when ``--json`` names a file). Progress lines go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from bench.recording_latency import run_latency
from bench.recording_overhead import compare, run_bare, run_heldar, sim_path
from bench.report import emit
from bench.stack import Stack

logger = logging.getLogger("bench.recording")

TARGETS = {
    "cpu_ratio_n32": 1.10,
    "pss_mb_per_camera": 80.0,
    "drop_to_resume_s": 3.0,
    "stall_to_restart_s": 10.0,
    "sigkill_to_recording_s": 5.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.recording", description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", default="1,8,32", help="comma-separated N values (default 1,8,32)")
    p.add_argument("--seconds", type=float, default=30.0, help="measuring window per side and N (default 30)")
    p.add_argument("--warmup", type=float, default=10.0, help="warm-up before each window (default 10)")
    p.add_argument("--latency-runs", type=int, default=5, help="samples per latency measurement (default 5)")
    p.add_argument("--overhead-segment-seconds", type=int, default=10)
    p.add_argument("--latency-segment-seconds", type=int, default=2)
    p.add_argument("--down-seconds", type=float, default=5.0, help="how long the camera is down (default 5)")
    p.add_argument("--start-timeout", type=float, default=240.0, help="limit for N cameras to reach recording")
    p.add_argument("--json", dest="json_path", help="write the JSON here instead of stdout")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch directory (debugging)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.n_values = [int(x) for x in str(args.cameras).split(",") if x.strip()]
    if any(n < 1 for n in args.n_values):
        p.error("--cameras: N must be >= 1")
    return args


def host_info() -> dict[str, Any]:
    from heldar.media.binary import ffmpeg_exe

    ffmpeg = ffmpeg_exe()
    try:
        version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
    except Exception as exc:
        version = f"? ({exc.__class__.__name__})"
    import ray

    return {
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "mem_total_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "ffmpeg": ffmpeg,
        "ffmpeg_version": version,
    }


def idle_actor_pid() -> tuple[Any, int]:
    """A trivial ``num_cpus=0`` Ray actor: the floor any actor-per-camera design pays."""
    import ray

    @ray.remote(num_cpus=0)
    class Idle:
        def pid(self) -> int:
            return os.getpid()

    handle = Idle.remote()  # type: ignore[attr-defined]
    return handle, int(ray.get(handle.pid.remote(), timeout=120))


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "recording",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "config": {
            "n_values": args.n_values,
            "window_s": args.seconds,
            "warmup_s": args.warmup,
            "overhead_segment_seconds": args.overhead_segment_seconds,
            "latency_segment_seconds": args.latency_segment_seconds,
            "latency_runs": args.latency_runs,
            "down_s": args.down_seconds,
        },
        "targets": TARGETS,
        "errors": [],
    }
    t_all = time.monotonic()
    with Stack(keep_scratch=args.keep_scratch) as stack:
        assert stack.sim is not None and stack.settings is not None
        result["host"] = host_info()
        result["stack_start"] = stack.timings
        result["settings"] = {
            k: getattr(stack.settings, k)
            for k in ("rtsp_timeout_s", "indexer_interval_s", "health_interval_s", "health_timeout_s",
                      "gap_threshold_s", "db_actor_connections")
        }  # fmt: skip
        idle_handle, idle_pid = idle_actor_pid()
        supervisor_pid = stack.supervisor_pid()
        result["supervisor_pid"] = supervisor_pid
        if not args.skip_overhead:
            for i in range(max(args.n_values)):
                stack.sim.add_camera(sim_path(i))
            result["overhead"] = []
            for n in args.n_values:
                entry: dict[str, Any] = {"n": n, "segment_seconds": args.overhead_segment_seconds}
                try:
                    logger.info("overhead N=%d: bare ffmpeg", n)
                    entry["bare"] = run_bare(
                        stack, n, segment_seconds=args.overhead_segment_seconds, warmup_s=args.warmup,
                        seconds=args.seconds, idle_pid=idle_pid,
                    )  # fmt: skip
                    logger.info("overhead N=%d: heldar", n)
                    entry["heldar"] = run_heldar(
                        stack, n, segment_seconds=args.overhead_segment_seconds, warmup_s=args.warmup,
                        seconds=args.seconds, idle_pid=idle_pid, supervisor_pid=supervisor_pid,
                        start_timeout_s=args.start_timeout,
                    )  # fmt: skip
                    entry["compare"] = compare(entry["bare"], entry["heldar"])
                    logger.info("overhead N=%d: %s", n, entry["compare"])
                except Exception as exc:
                    logger.exception("overhead N=%d failed", n)
                    result["errors"].append(f"overhead N={n}: {exc.__class__.__name__}: {exc}")
                result["overhead"].append(entry)
        if not args.skip_latency:
            logger.info("latency phase (%d s segments, %d runs each)", args.latency_segment_seconds, args.latency_runs)
            try:
                result["latency"] = run_latency(
                    stack,
                    runs=args.latency_runs,
                    segment_seconds=args.latency_segment_seconds,
                    down_s=args.down_seconds,
                )
            except Exception as exc:
                logger.exception("latency phase failed")
                result["errors"].append(f"latency: {exc.__class__.__name__}: {exc}")
        from bench.procs import memory

        idle_mem = memory(idle_pid)
        result["idle_ray_actor"] = idle_mem.as_mb() if idle_mem else None
        del idle_handle
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["duration_s"] = round(time.monotonic() - t_all, 1)
    result["verdict"] = verdict(result)
    return result


def _median(result: dict[str, Any], test: str, key: str) -> float | None:
    summary = result.get("latency", {}).get(test, {}).get("summary", {}).get(key, {})
    value = summary.get("median")
    return float(value) if value is not None else None


def verdict(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: float, unit: str, note: str = "") -> None:
        rows.append({
            "target": name, "value": value, "limit": target, "unit": unit,
            "met": None if value is None else value <= target,
            "missed_by": None if value is None or value <= target else round(value - target, 3),
            "missed_by_factor": None if value is None or value <= target else round(value / target, 2),
            "note": note,
        })  # fmt: skip

    overhead = [e for e in result.get("overhead", []) if "compare" in e]
    if overhead:
        top = max(overhead, key=lambda e: e["n"])
        cmp_, h = top["compare"], top["heldar"]
        n = top["n"]
        add(
            f"CPU heldar/bare at N={n} (with supervisor)",
            cmp_["cpu_ratio_with_supervisor"],
            TARGETS["cpu_ratio_n32"],
            "x",
        )
        add(f"CPU heldar/bare at N={n} (cameras only)", cmp_["cpu_ratio_cameras_only"], TARGETS["cpu_ratio_n32"], "x")
        add(f"PSS per camera at N={n} (actor + ffmpeg)", h["pss_mb_per_camera"], TARGETS["pss_mb_per_camera"], "MB")
        n1 = min(overhead, key=lambda e: e["n"])
        if n1 is not top:
            add(f"PSS per camera at N={n1['n']}", n1["heldar"]["pss_mb_per_camera"], TARGETS["pss_mb_per_camera"], "MB")
    if "latency" in result:
        add("drop-to-resume (first new file), median", _median(result, "drop_to_resume", "file_s"),
            TARGETS["drop_to_resume_s"], "s")  # fmt: skip
        add("stall-to-restart (new ffmpeg), median", _median(result, "stall_to_restart", "restarted_s"),
            TARGETS["stall_to_restart_s"], "s")  # fmt: skip
        add("SIGKILL-to-recording (first new file), median", _median(result, "sigkill_to_recording", "file_s"),
            TARGETS["sigkill_to_recording_s"], "s")  # fmt: skip
    return rows


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(result: dict[str, Any]) -> str:
    lines: list[str] = []
    cfg = result["config"]
    lines.append(
        f"heldar recording benchmark  {result['started_at']}  load avg at start {result['loadavg_start']}"
        f"  end {result.get('loadavg_end')}  ({result.get('duration_s')} s)"
    )
    overhead = [e for e in result.get("overhead", []) if "compare" in e]
    if overhead:
        lines.append("")
        lines.append(
            f"overhead: {cfg['overhead_segment_seconds']} s segments, {cfg['warmup_s']:.0f} s warm-up, "
            f"{cfg['window_s']:.0f} s window; CPU = user+system s in the window; PSS/RSS in MB; "
            "busy% = whole machine during the bare/heldar window"
        )
        head = (
            f"{'N':>3} {'bare cpu':>9} {'heldar cpu':>10} {'(ffmpeg':>8} {'actors':>7} {'sup)':>6} "
            f"{'ratio':>6} {'ratio-sup':>9} {'bare PSS':>9} {'heldar PSS/cam':>14} {'(actor':>7} {'ffmpeg)':>8} "
            f"{'RSS/cam':>8} {'start s':>8} {'busy% b/h':>10}"
        )
        lines.append(head)
        for e in overhead:
            b, h, c = e["bare"], e["heldar"], e["compare"]
            lines.append(
                f"{e['n']:>3} {b['cpu_s']:>9.2f} {h['cpu_s']:>10.2f} {h['ffmpeg_cpu_s']:>8.2f} "
                f"{h['actor_self_cpu_s']:>7.2f} {h['supervisor_cpu_s']:>6.2f} "
                f"{_fmt(c['cpu_ratio_with_supervisor']):>6} {_fmt(c['cpu_ratio_cameras_only']):>9} "
                f"{_fmt(b['pss_mb_per_camera'], 1):>9} {_fmt(h['pss_mb_per_camera'], 1):>14} "
                f"{_fmt(h['actor_pss_mb_per_camera'], 1):>7} {_fmt(h['ffmpeg_pss_mb_per_camera'], 1):>8} "
                f"{_fmt(h['rss_mb_per_camera'], 1):>8} {_fmt(h['start']['all_recording_s'], 1):>8} "
                f"{b['host_during_window']['system_cpu_busy_pct']:>4.0f}/{h['host_during_window']['system_cpu_busy_pct']:<4.0f}"
            )
        kbps = overhead[-1]["bare"].get("stream_kbps_per_camera")
        lines.append(f"stream copied per camera: {_fmt(kbps, 0)} kbit/s (simulator: 640x360, 15 fps, 1 s GOP)")
        idle = overhead[-1]["heldar"]["context"].get("idle_ray_actor", {})
        lines.append(
            f"idle Ray actor (reference): PSS {_fmt(idle.get('pss_mb'), 1)} MB, RSS {_fmt(idle.get('rss_mb'), 1)} MB, "
            f"CPU {_fmt(overhead[-1]['compare']['idle_ray_actor_cpu_ms_per_s'], 2)} ms/s; heldar actor CPU "
            f"{_fmt(overhead[-1]['compare']['actor_cpu_ms_per_camera_per_s'], 2)} ms/s per camera"
        )
    lat = result.get("latency")
    if lat:
        lines.append("")
        lines.append(f"latency: {lat['segment_seconds']} s segments, {lat['runs']} runs; seconds after T")
        lines.append(f"{'measure':<44} {'median':>7} {'min':>7} {'max':>7} {'failed':>6}")
        rows = [
            ("drop-to-resume: first new file", "drop_to_resume", "file_s"),
            ("drop-to-resume: first media bytes on disk", "drop_to_resume", "media_s"),
            ("drop-to-resume: indexed in DB", "drop_to_resume", "indexed_s"),
            ("stall-to-restart: stall detected", "stall_to_restart", "detected_s"),
            ("stall-to-restart: new ffmpeg pid", "stall_to_restart", "restarted_s"),
            ("SIGKILL-to-recording: new actor up", "sigkill_to_recording", "new_actor_up_s"),
            ("SIGKILL-to-recording: first new file", "sigkill_to_recording", "file_s"),
            ("SIGKILL-to-recording: indexed in DB", "sigkill_to_recording", "indexed_s"),
        ]
        for label, test, key in rows:
            s = lat[test]["summary"][key]
            lines.append(
                f"{label:<44} {_fmt(s.get('median')):>7} {_fmt(s.get('min')):>7} {_fmt(s.get('max')):>7} "
                f"{s.get('failed', 0):>6}"
            )
    if result.get("verdict"):
        lines.append("")
        lines.append("targets")
        for v in result["verdict"]:
            mark = "?" if v["met"] is None else ("met" if v["met"] else f"MISSED (x{v['missed_by_factor']})")
            lines.append(f"  {v['target']:<48} {_fmt(v['value']):>8} {v['unit']:<2} <= {v['limit']:<6} {mark}")
    for err in result.get("errors", []):
        lines.append(f"error: {err}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("heldar.fakecam", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        result = run(args)
    except KeyboardInterrupt:
        logger.error("interrupted; everything stopped")
        return 130
    emit(result, table(result), args.json_path)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
