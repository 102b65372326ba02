"""Recording density: bare ``ffmpeg -c copy`` vs heldar on the same simulated cameras, side by side, per bitrate.

    python -m bench.density [--cameras 1,8,32] [--bitrates 0.55,4] [--modes 1,16] [--seconds 30] [--warmup 10]
                            [--repeats 2] [--profile-n 8] [--profile-seconds 20] [--side-by-side] [--json out.json]

For each bitrate one stack (PostgreSQL, Ray, supervisor, simulator) runs; inside it, for each repeat and N, the
windows are interleaved: bare ffmpeg, then heldar in each ``--modes`` entry (cameras per recorder host: 1 = one
camera actor per camera, k = recorder hosts of k cameras), so every heldar window has a bare baseline measured
minutes before it on the same loaded machine. With ``--side-by-side`` bare ffmpeg and heldar record at the same
time instead (N cameras each, the same simulator paths) and one window measures both: on a shared machine whose
load drifts between windows (a VM's neighbours), this is the comparison that holds still.
Reported: CPU seconds per camera-minute (user + system), the ratio
heldar/bare, PSS per camera (actor or its share of the host, + ffmpeg), the machine's busy % and load average.

Bitrates: ``0.55`` is the simulator's own 640x360 stream; ``4`` is a pre-encoded 1920x1080 15 fps 1 s GOP H.264
file at about 4 Mbit/s, looped with ``-c copy`` (so serving it costs almost nothing), built once into
``--source-dir``.

Profile (``--profile-n``, per mode): CPU per thread of every camera process (``/proc/<pid>/task``: Ray's core
worker threads by name, the asyncio loop thread, ``asyncio_*`` to_thread workers) and a ``py-spy record``
(``--nonblocking``, 50 Hz) of one camera process, its Python samples split into record loop, index loop,
flush, health/status RPCs, Ray's Python side and other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.procs import MB, Mem
from bench.recording_overhead import (
    BareRun,
    Group,
    bare_report,
    context_groups,
    measure,
    run_bare,
    sim_path,
    start_bare,
    stop_bare,
    wait_recording,
)
from bench.report import emit
from bench.stack import Stack

logger = logging.getLogger("bench.density")

TARGETS = {"cpu_ratio_4mbps_n32": 1.25, "cpu_ratio_055mbps_n32": 3.0, "pss_mb_per_camera": 80.0}
SOURCE_SECONDS = 10


# --- the 4 Mbit/s source ----------------------------------------------------------------------------------------
def prepare_source(directory: Path, kbps: int = 4000) -> Path:
    """A 1080p15, 1 s GOP, ~``kbps`` H.264 MP4 (AUDs, SPS/PPS on every keyframe), encoded once."""
    from heldar.media.binary import ffmpeg_exe

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"density-1080p15-{kbps}k.mp4"  # mp4: -stream_loop needs a seekable input
    if path.exists() and path.stat().st_size > 0:
        return path
    tmp = path.with_suffix(".part")
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=15,noise=alls=12:allf=t,format=yuv420p",
        "-t", str(SOURCE_SECONDS), "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
        "-b:v", f"{kbps}k", "-minrate", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k",
        "-g", "15", "-keyint_min", "15", "-sc_threshold", "0", "-bf", "0",
        "-x264-params", "aud=1:repeat-headers=1:nal-hrd=cbr", "-f", "mp4", os.fspath(tmp),
    ]  # fmt: skip
    logger.info("encoding the %d kbit/s 1080p source (%d s, once)", kbps, SOURCE_SECONDS)
    subprocess.run(cmd, check=True, timeout=900)
    tmp.rename(path)
    return path


_ORIGINAL_COMMAND: Any = None


def use_preencoded_source(path: Path | None) -> None:
    """Make the simulator's shared encoder loop ``path`` with ``-c copy`` instead of encoding.

    A bench-local stand-in until the simulator serves pre-encoded files itself (the fidelity work); the RTSP
    server, packetizer and fan-out are the simulator's own."""
    from heldar.fakecam import encoder as encoder_mod
    from heldar.media.binary import ffmpeg_exe

    global _ORIGINAL_COMMAND
    if _ORIGINAL_COMMAND is None:
        _ORIGINAL_COMMAND = encoder_mod.SharedEncoder.command
    if path is None:  # the simulator's own encoder again
        encoder_mod.SharedEncoder.command = _ORIGINAL_COMMAND  # type: ignore[method-assign]
        return

    def command(self: Any, source: Any = None) -> list[str]:
        return [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
            "-i", os.fspath(path), "-an", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "pipe:1",
        ]  # fmt: skip

    encoder_mod.SharedEncoder.command = command  # type: ignore[method-assign]


def sim_kwargs_for(bitrate: str, source_dir: Path) -> dict[str, Any]:
    if bitrate in ("0.55", "low"):
        use_preencoded_source(None)
        return {"replay_minutes": 1.0}
    if bitrate in ("4", "high"):
        use_preencoded_source(prepare_source(source_dir))
        from heldar.fakecam import EncoderSettings

        return {"settings": EncoderSettings(width=1920, height=1080, fps=15), "replay_minutes": 0.5}
    raise ValueError(f"unknown bitrate {bitrate!r} (0.55 or 4)")


# --- heldar side ------------------------------------------------------------------------------------------------
def configure(stack: Stack, per_host: int) -> None:
    import ray

    assert stack.settings is not None
    if "cameras_per_recorder_host" not in type(stack.settings).model_fields:  # a tree from before recorder hosts
        if per_host != 1:
            raise RuntimeError("this heldar has no recorder hosts (HELDAR_CAMERAS_PER_RECORDER_HOST)")
        return
    stack.settings = stack.settings.model_copy(update={"cameras_per_recorder_host": per_host})
    ray.get(stack.supervisor.configure.remote(stack.settings.model_dump(mode="json")), timeout=60)


def camera_health(stack: Stack, ids: list[str], timeout: float = 30.0) -> dict[str, dict[str, Any] | None]:
    """Each camera's ``health()`` through the supervisor (works for camera actors and recorder hosts)."""
    import ray

    refs = {cid: stack.supervisor.camera_health.remote(cid) for cid in ids}
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
    for cid, ref in refs.items():
        with contextlib.suppress(Exception):
            out[cid] = ray.get(ref, timeout=timeout)
    return out


def remove_cameras(stack: Stack, ids: list[str], pids: set[int]) -> float:
    assert stack.db is not None
    t = time.monotonic()
    stack.db.execute("UPDATE cameras SET record_enabled = false, updated_at = now() WHERE id = ANY($1)", ids)
    stack.reconcile(timeout=120)
    stack.db.execute("DELETE FROM cameras WHERE id = ANY($1)", ids)
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=30)
    if alive:
        logger.warning("%d camera processes still alive after removal", len(alive))
    for cid in ids:
        shutil.rmtree(stack.camera_dir(cid), ignore_errors=True)
    return time.monotonic() - t


def start_cameras(stack: Stack, n: int, tag: str, segment_seconds: int, timeout_s: float) -> tuple[list[str], dict]:
    assert stack.sim is not None
    ids = [f"{tag}-{i:03d}" for i in range(n)]
    stack.add_cameras([(cid, stack.sim.url(sim_path(i))) for i, cid in enumerate(ids)], segment_seconds)
    t0 = time.monotonic()
    stack.reconcile(ids[-1])
    seen = wait_recording(stack, ids, t0, timeout_s)
    start = {
        "all_recording_s": max(seen.values()) if len(seen) == n else None,
        "median_recording_s": sorted(seen.values())[len(seen) // 2] if seen else None,
        "recording": len(seen),
        "of": n,
    }
    return ids, start


def run_heldar_mode(
    stack: Stack,
    n: int,
    per_host: int,
    *,
    tag: str,
    segment_seconds: int,
    warmup_s: float,
    seconds: float,
    idle_pid: int,
    supervisor_pid: int,
    start_timeout_s: float,
    profile_seconds: float = 0.0,
    beside: BareRun | None = None,
) -> dict[str, Any]:
    """heldar recording N cameras in one mode; with ``beside``, those bare recorders run in the same window and
    their report comes back as ``bare_beside`` (both sides see the same moment of the machine)."""
    configure(stack, per_host)
    ids, start = start_cameras(stack, n, tag, segment_seconds, start_timeout_s)
    pids: set[int] = set()
    bare_beside: dict[str, Any] | None = None
    try:
        logger.info("heldar N=%d per_host=%d: %d/%d recording after %s s", n, per_host, start["recording"], n,
                    start["all_recording_s"])  # fmt: skip
        time.sleep(warmup_s)
        health = camera_health(stack, ids)
        pids = {int(h["actor_pid"]) for h in health.values() if h}
        groups = [Group(f"proc:{pid}", pid, True, "camera") for pid in sorted(pids)]
        sup = Group("supervisor", supervisor_pid, False, "supervisor")
        bare_groups = beside.groups() if beside is not None else []
        ctx = context_groups(stack, idle_pid, exclude=pids | {g.pid for g in bare_groups})
        bytes0 = beside.bytes_written() if beside is not None else 0
        window = measure([*groups, *bare_groups, sup, *ctx], seconds)
        if beside is not None:
            bare_beside = bare_summary(bare_report(beside, window, beside.bytes_written() - bytes0, ctx), n)
        health_after = camera_health(stack, ids)
        profile = profile_processes(sorted(pids), profile_seconds) if profile_seconds > 0 else None
    finally:
        removal_s = remove_cameras(stack, ids, pids)
    actor_cpu = sum(window.cpu[g.name].self_s for g in groups)
    ffmpeg_cpu = sum(window.cpu[g.name].children_s for g in groups)
    actor_mem = sum(((window.self_mem[g.name] or Mem()) for g in groups), Mem())
    ffmpeg_mem = sum((window.child_mem[g.name] for g in groups), Mem())
    restarts = sum(
        1 for cid in ids
        if health.get(cid) and health_after.get(cid) and health_after[cid]["runs"] != health[cid]["runs"]  # type: ignore[index]
    )  # fmt: skip
    sup_cpu = window.cpu["supervisor"].total_s
    k = max(1, len(ids))
    return {
        "mode": "camera actors" if per_host == 1 else f"recorder hosts of {per_host}",
        "cameras_per_recorder_host": per_host,
        "start": start,
        "window_s": round(window.seconds, 2),
        "host_during_window": window.host,
        "processes": len(groups),
        "cameras_answering": sum(1 for h in health.values() if h),
        "cameras_cpu_s": round(actor_cpu + ffmpeg_cpu, 3),
        "actor_self_cpu_s": round(actor_cpu, 3),
        "ffmpeg_cpu_s": round(ffmpeg_cpu, 3),
        "supervisor_cpu_s": round(sup_cpu, 3),
        "cpu_s_per_camera_minute": round(60 * (actor_cpu + ffmpeg_cpu) / window.seconds / k, 3),
        "actor_cpu_ms_per_camera_s": round(1000 * actor_cpu / window.seconds / k, 3),
        "ffmpeg_restarts_in_window": restarts,
        "pss_mb_per_camera": round((actor_mem.pss + ffmpeg_mem.pss) / k / MB, 2),
        "actor_pss_mb_per_camera": round(actor_mem.pss / k / MB, 2),
        "ffmpeg_pss_mb_per_camera": round(ffmpeg_mem.pss / k / MB, 2),
        "actor_pss_mb_per_process": round(actor_mem.pss / max(1, len(groups)) / MB, 2),
        "removal_s": round(removal_s, 2),
        "idle_ray_actor_cpu_ms_s": round(1000 * window.cpu["idle_ray_actor"].total_s / window.seconds, 3),
        "profile": profile,
        "bare_beside": bare_beside,
    }


# --- profile ----------------------------------------------------------------------------------------------------
def _thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as fh:
                    raw = fh.read()
            except OSError:
                continue
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _thread_group(pid: int, tid: int, comm: str, python_names: dict[int, str]) -> str:
    """A thread's label: its Python name when py-spy saw it (Python 3.11 does not name OS threads, so the asyncio
    loop and to_thread workers carry the process title), else the main thread, else the native (Ray/gRPC) name."""
    if tid in python_names:
        name = python_names[tid]
        if name.startswith("asyncio_"):
            return "python: asyncio to_thread workers"
        return f"python: {name}"
    if tid == pid:
        return "python: MainThread"
    if comm.startswith("ray::"):
        return "python: other threads (asyncio loop, to_thread workers)"
    return f"native: {comm}"


# Python frames that say which part of the camera actor a sample belongs to, first match wins.
_PARTS = [
    ("record loop", ("_record_loop", "_one_run", "_disk_has_room", "stat_current", "_sleep (heldar")),
    ("index loop", ("_index_loop", "index_once", "_probe", "probe_segment", "file_sha256")),
    ("flush / status path", ("_flush_loop", "flush (heldar", "write (actors", "_call (actors", "_take_batch")),
    ("health / status RPC", ("health (actors", "health (heldar", "camera_health", "watch (actors", "host_health")),
    ("ffmpeg stderr drain", ("_drain_stderr",)),
    ("folder listing (to_thread)", ("list_segment_files", "_list_folder", "ensure_day_dirs")),
    ("ray core worker, python side", ("ray/", "_raylet")),
    ("asyncio loop itself", ("asyncio/",)),
]


# Leaf frames of threads that are waiting, not running: py-spy's idle test misses a thread blocked in a syscall
# (each ffmpeg child's asyncio-waitpid thread sits in wait4 all its life; with 32 of them they were most samples).
_WAITING_LEAVES = ("wait4 (", "epoll_wait (", "select (", "poll (", "pthread_cond_wait", "sem_wait", "futex")


def is_waiting(thread: str, leaf: str) -> bool:
    return thread.startswith("asyncio-waitpid") or any(leaf.startswith(w) or w in leaf for w in _WAITING_LEAVES)


def classify_stack(stack: str) -> str:
    for part, needles in _PARTS:
        if any(needle in stack for needle in needles):
            return part
    return "other"


def py_spy(pid: int, seconds: float, out_dir: Path, rate: int = 100) -> dict[str, Any]:
    """``py-spy record --nonblocking`` of one process (Python frames only; ``--native`` needs the process paused per
    sample, and a paused process shows every waiting thread as running, so its split was mostly idle threads):
    samples per part, per thread, top leaves."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out = out_dir / f"spy-{pid}.txt"
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
           "--format", "raw", "--output", os.fspath(out), "--threads", "--nonblocking"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0 or not out.exists():
        return {"error": (proc.stderr or proc.stdout)[-300:]}
    parts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    names: dict[int, str] = {}
    total = waiting = 0
    for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        head = frames[0]  # "thread (TID): NAME" (name may be missing)
        thread = head.split(":", 1)[1].strip() if ":" in head else head
        with contextlib.suppress(ValueError, IndexError):
            names[int(head[head.index("(") + 1 : head.index(")")], 0)] = thread
        if is_waiting(thread, frames[-1]):
            waiting += count
            continue
        total += count
        in_task_loop = any("main_loop (ray/_private/worker.py" in f for f in frames) and not any(
            "heldar/" in f or "actors/" in f for f in frames
        )
        parts["ray main thread: C++ task loop" if in_task_loop else classify_stack(stack)] += count
        threads[thread] += count
        leaves[frames[-1]] += count
    pct = (lambda c, k: {n: round(100 * v / total, 1) for n, v in c.most_common(k)}) if total else (lambda c, k: {})
    return {
        "rate_hz": rate,
        "samples_on_cpu": total,
        "samples_dropped_as_waiting": waiting,
        "python_thread_names": {str(k): v for k, v in names.items()},
        "parts_pct": pct(parts, 20),
        "threads_pct": pct(threads, 10),
        "top_leaf_frames_pct": pct(leaves, 15),
    }


def profile_processes(pids: list[int], seconds: float) -> dict[str, Any]:
    """Per-thread CPU of every camera process over ``seconds``, then py-spy of the first one for as long.

    The two windows are apart on purpose: py-spy's sampling costs the process something (``--native`` paused it
    for every sample, which once made a host look several times as busy as it was), and that cost would be charged
    to the very threads being measured."""
    before = {pid: _thread_cpu(pid) for pid in pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    after = {pid: _thread_cpu(pid) for pid in pids}
    with tempfile.TemporaryDirectory(prefix="density-spy-") as tmp:
        spy = py_spy(pids[0], seconds, Path(tmp)) if pids else {}
    python_names = {int(k): v for k, v in spy.get("python_thread_names", {}).items()}
    groups: Counter[str] = Counter()
    for pid in pids:
        for tid, (comm, cpu) in after[pid].items():
            prev = before[pid].get(tid, (comm, 0.0))[1]
            label = _thread_group(pid, tid, comm, python_names if pid == pids[0] else {})
            groups[label] += max(0.0, cpu - prev)
    total = sum(groups.values())
    k = max(1, len(pids))
    return {
        "processes": len(pids),
        "seconds": round(elapsed, 1),
        "note": "thread CPU from /proc/<pid>/task (all processes; python thread names only for the py-spy'd one), "
        "then py-spy --nonblocking samples (Python frames) of that one in a window of its own (on-CPU only, by "
        "py-spy's idle test, less the threads waiting in wait4/epoll)",
        "thread_cpu_ms_per_process_s": {g: round(1000 * v / elapsed / k, 3) for g, v in groups.most_common()},
        "thread_cpu_pct": {g: round(100 * v / total, 1) for g, v in groups.most_common()} if total else {},
        "py_spy_first_process": spy,
    }


# --- Ray worker settings ----------------------------------------------------------------------------------------
_GRPC_POLL = {"RAY_grpc_client_channel_backup_poll_interval_ms": "60000",
              "GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS": "60000"}  # fmt: skip
RAY_VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "RAY_event_stats=0": {"RAY_event_stats": "0"},
    "RAY_task_events_report_interval_ms=0": {"RAY_task_events_report_interval_ms": "0"},
    "RAY_metrics_report_interval_ms=600000": {"RAY_metrics_report_interval_ms": "600000"},
    "RAY_core_worker_internal_heartbeat_ms=10000": {"RAY_core_worker_internal_heartbeat_ms": "10000"},
    "RAY_io_context_event_loop_lag_collection_interval_ms=-1": {
        "RAY_io_context_event_loop_lag_collection_interval_ms": "-1"
    },
    "RAY_grpc_client_channel_backup_poll_interval_ms=60000": _GRPC_POLL,
    "all of the above": {
        "RAY_event_stats": "0", "RAY_task_events_report_interval_ms": "0", "RAY_metrics_report_interval_ms": "600000",
        "RAY_core_worker_internal_heartbeat_ms": "10000", "RAY_io_context_event_loop_lag_collection_interval_ms": "-1",
        **_GRPC_POLL,
    },
}  # fmt: skip


def run_ray_settings(actors_per_variant: int, seconds: float) -> dict[str, Any]:
    """Idle ``num_cpus=0`` actors (sync, and async as a camera actor is) per setting, all in one window, so every
    variant sees the same load; CPU ms/s per actor (median) and PSS."""
    import ray

    from bench.procs import cpu_delta, memory, tree_cpu

    @ray.remote(num_cpus=0)
    class IdleSync:
        def pid(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0, max_concurrency=32)
    class IdleAsync:
        async def pid(self) -> int:
            return os.getpid()

    handles: list[tuple[str, Any]] = []
    for label, env in RAY_VARIANTS.items():
        for _ in range(actors_per_variant):
            handles.append((label, IdleAsync.options(runtime_env={"env_vars": env}).remote()))  # type: ignore[attr-defined]
    for _ in range(actors_per_variant):
        handles.append(("default, sync actor", IdleSync.remote()))  # type: ignore[attr-defined]
    pids = [(label, int(ray.get(h.pid.remote(), timeout=180))) for label, h in handles]
    time.sleep(5)
    before = {pid: tree_cpu(pid, children=False) for _, pid in pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    after = {pid: tree_cpu(pid, children=False) for _, pid in pids}
    elapsed = time.monotonic() - t0
    mem = {pid: memory(pid) for _, pid in pids}
    out: dict[str, Any] = {"seconds": round(elapsed, 1), "loadavg_1m": round(os.getloadavg()[0], 2), "variants": {}}
    for label in [*RAY_VARIANTS, "default, sync actor"]:
        mine = [pid for lab, pid in pids if lab == label]
        cpu = [1000 * cpu_delta(before[p], after[p]).total_s / elapsed for p in mine]
        pss = [m.pss / MB for p in mine if (m := mem[p]) is not None]
        out["variants"][label] = {
            "cpu_ms_per_s_median": _med(cpu), "cpu_ms_per_s_all": [round(c, 2) for c in cpu],
            "pss_mb_median": _med(pss),
        }  # fmt: skip
    for _, h in handles:
        with contextlib.suppress(Exception):
            ray.kill(h)
    return out


# --- bare side --------------------------------------------------------------------------------------------------
def bare_summary(b: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "cpu_s": b["cpu_s"],
        "window_s": b["window_s"],
        "cpu_s_per_camera_minute": round(60 * b["cpu_s"] / b["window_s"] / n, 3),
        "pss_mb_per_camera": b["pss_mb_per_camera"],
        "stream_kbps_per_camera": b["stream_kbps_per_camera"],
        "died": b["died"],
        "host_during_window": b["host_during_window"],
        "idle_ray_actor_cpu_ms_s": round(
            1000 * b["context"].get("idle_ray_actor", {}).get("cpu_s", 0) / b["window_s"], 3
        ),
    }


# --- run --------------------------------------------------------------------------------------------------------
def run_bitrate(args: argparse.Namespace, bitrate: str, save: Any = None) -> dict[str, Any]:
    from bench.recording import idle_actor_pid

    out: dict[str, Any] = {"bitrate_mbps": bitrate, "samples": [], "errors": []}
    with Stack(sim_kwargs=sim_kwargs_for(bitrate, Path(args.source_dir))) as stack:
        assert stack.sim is not None
        out["stack_start"] = stack.timings
        idle_handle, idle_pid = idle_actor_pid()
        supervisor_pid = stack.supervisor_pid()
        for i in range(max(args.n_values)):
            stack.sim.add_camera(sim_path(i))
        for rep in range(args.repeats):
            for n in args.n_values:
                sample: dict[str, Any] = {"n": n, "repeat": rep, "loadavg": list(os.getloadavg())}
                try:
                    if not args.side_by_side:
                        logger.info("[%s Mbit/s] repeat %d N=%d: bare", bitrate, rep, n)
                        bare = run_bare(stack, n, segment_seconds=args.segment_seconds, warmup_s=args.warmup,
                                        seconds=args.seconds, idle_pid=idle_pid)  # fmt: skip
                        sample["bare"] = bare_summary(bare, n)
                    sample["heldar"] = []
                    for per_host in args.modes:
                        profile_s = args.profile_seconds if (n == args.profile_n and rep == 0) else 0.0
                        beside = (
                            start_bare(stack, n, segment_seconds=args.segment_seconds) if args.side_by_side else None
                        )
                        try:
                            h = run_heldar_mode(
                                stack, n, per_host, tag=f"d{rep}n{n}h{per_host}", segment_seconds=args.segment_seconds,
                                warmup_s=args.warmup, seconds=args.seconds, idle_pid=idle_pid,
                                supervisor_pid=supervisor_pid, start_timeout_s=args.start_timeout,
                                profile_seconds=profile_s, beside=beside,
                            )  # fmt: skip
                        finally:
                            if beside is not None:
                                stop_bare(beside)
                        if beside is not None:  # the bare window of this mode is its own, measured beside it
                            sample["bare"] = h["bare_beside"]
                        b = sample["bare"]["cpu_s_per_camera_minute"]
                        h["cpu_ratio"] = round(h["cpu_s_per_camera_minute"] / b, 3) if b else None
                        logger.info("  per_host=%d: %.3f vs bare %.3f cpu-s/cam-min (x%s), PSS %.1f MB/cam",
                                    per_host, h["cpu_s_per_camera_minute"], b, h["cpu_ratio"],
                                    h["pss_mb_per_camera"])  # fmt: skip
                        sample["heldar"].append(h)
                except Exception as exc:
                    logger.exception("N=%d failed", n)
                    out["errors"].append(f"{bitrate} Mbit/s N={n}: {exc.__class__.__name__}: {exc}")
                out["samples"].append(sample)
                if save is not None:
                    save(out)  # an interrupted run keeps what it measured
        if args.ray_settings and bitrate == args.bitrate_list[0]:
            logger.info("Ray worker settings: %d idle actors per variant", args.ray_settings)
            try:
                out["ray_settings"] = run_ray_settings(args.ray_settings, args.seconds)
            except Exception as exc:
                logger.exception("ray settings phase failed")
                out["errors"].append(f"ray settings: {exc.__class__.__name__}: {exc}")
        del idle_handle
    out["summary"] = summarise(out["samples"], args.modes)
    return out


def summarise(samples: list[dict[str, Any]], modes: list[int]) -> list[dict[str, Any]]:
    """Per N and mode: medians over repeats of the ratio (each against its own bare window) and of PSS."""
    rows = []
    for n in sorted({s["n"] for s in samples}):
        bare = [s["bare"] for s in samples if s["n"] == n and "bare" in s]
        for per_host in modes:
            hs = [
                h
                for s in samples
                if s["n"] == n
                for h in s.get("heldar", [])
                if h["cameras_per_recorder_host"] == per_host
            ]
            if not bare or not hs:
                continue
            if all(h.get("bare_beside") for h in hs):  # side by side: each mode's own bare, from its window
                bare = [h["bare_beside"] for h in hs]
            rows.append({
                "n": n,
                "cameras_per_recorder_host": per_host,
                "repeats": len(hs),
                "bare_cpu_s_per_camera_minute": _med([b["cpu_s_per_camera_minute"] for b in bare]),
                "heldar_cpu_s_per_camera_minute": _med([h["cpu_s_per_camera_minute"] for h in hs]),
                "cpu_ratio": _med([h["cpu_ratio"] for h in hs if h["cpu_ratio"] is not None]),
                "cpu_ratio_all": [h["cpu_ratio"] for h in hs],
                "actor_cpu_ms_per_camera_s": _med([h["actor_cpu_ms_per_camera_s"] for h in hs]),
                "bare_pss_mb_per_camera": _med([b["pss_mb_per_camera"] for b in bare if b["pss_mb_per_camera"]]),
                "pss_mb_per_camera": _med([h["pss_mb_per_camera"] for h in hs]),
                "supervisor_cpu_ms_s": _med([1000 * h["supervisor_cpu_s"] / h["window_s"] for h in hs]),
                "busy_pct": _med([h["host_during_window"]["system_cpu_busy_pct"] for h in hs]),
                "loadavg_1m": _med([h["host_during_window"]["loadavg_1m_after"] for h in hs]),
                "stream_kbps": _med([b["stream_kbps_per_camera"] for b in bare]),
                "restarts_in_windows": sum(h["ffmpeg_restarts_in_window"] for h in hs),
            })  # fmt: skip
    return rows


def _med(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def table(result: dict[str, Any]) -> str:
    lines = [
        f"heldar density benchmark {result['started_at']}  load avg start {result['loadavg_start']} "
        f"end {result.get('loadavg_end')}  ({result.get('duration_s')} s); CPU = user+system, "
        "cpu-s/cam-min = CPU seconds per camera-minute; ratio = median of heldar/bare per repeat",
    ]
    for br in result["bitrates"]:
        lines.append("")
        lines.append(f"{br['bitrate_mbps']} Mbit/s")
        lines.append(
            f"{'N':>3} {'mode':>5} {'rep':>3} {'kbps':>6} {'bare':>7} {'heldar':>7} {'ratio':>6} {'actor ms/s':>10} "
            f"{'bare PSS':>8} {'PSS/cam':>8} {'sup ms/s':>8} {'busy%':>6} {'load':>5} {'restarts':>8}"
        )
        for r in br["summary"]:
            lines.append(
                f"{r['n']:>3} {r['cameras_per_recorder_host']:>5} {r['repeats']:>3} {r['stream_kbps'] or 0:>6.0f} "
                f"{r['bare_cpu_s_per_camera_minute']:>7.3f} {r['heldar_cpu_s_per_camera_minute']:>7.3f} "
                f"{r['cpu_ratio'] or 0:>6.2f} {r['actor_cpu_ms_per_camera_s']:>10.2f} "
                f"{r['bare_pss_mb_per_camera'] or 0:>8.1f} {r['pss_mb_per_camera']:>8.1f} "
                f"{r['supervisor_cpu_ms_s']:>8.1f} {r['busy_pct']:>6.0f} {r['loadavg_1m']:>5.1f} "
                f"{r['restarts_in_windows']:>8}"
            )
        for s in br["samples"]:
            for h in s.get("heldar", []):
                p = h.get("profile")
                if not p:
                    continue
                lines.append(f"profile N={s['n']} per_host={h['cameras_per_recorder_host']}: thread CPU ms/s per "
                             f"process {p['thread_cpu_ms_per_process_s']}")  # fmt: skip
                spy = p.get("py_spy_first_process") or {}
                lines.append(f"  py-spy parts %: {spy.get('parts_pct', spy.get('error'))}")
        rs = br.get("ray_settings")
        if rs:
            lines.append(f"idle actor CPU ms/s (median) and PSS MB per Ray setting, one {rs['seconds']} s window, "
                         f"load {rs['loadavg_1m']}:")  # fmt: skip
            for label, v in rs["variants"].items():
                lines.append(
                    f"  {label:<60} {v['cpu_ms_per_s_median'] or 0:>6.2f} ms/s {v['pss_mb_median'] or 0:>6.1f} MB"
                )
        for err in br["errors"]:
            lines.append(f"error: {err}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.density", description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", default="1,8,32")
    p.add_argument("--bitrates", default="0.55,4", help="comma-separated: 0.55 (simulator) and/or 4 (1080p file)")
    p.add_argument("--modes", default="1", help="cameras per recorder host to measure, e.g. 1,16")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--segment-seconds", type=int, default=10)
    p.add_argument("--profile-n", type=int, default=8, help="N at which to profile (first repeat); 0 = none")
    p.add_argument("--profile-seconds", type=float, default=20.0)
    p.add_argument("--start-timeout", type=float, default=240.0)
    p.add_argument("--ray-settings", type=int, default=0, help="idle actors per Ray setting variant (0 = skip)")
    p.add_argument("--side-by-side", action="store_true",
                   help="bare ffmpeg and heldar record N cameras each at the same time, measured in one window "
                        "(both see the same load), instead of in windows a minute apart")  # fmt: skip
    p.add_argument("--source-dir", default=os.path.join(tempfile.gettempdir(), "heldar-density-source"))
    p.add_argument("--json", dest="json_path")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.n_values = [int(x) for x in args.cameras.split(",") if x.strip()]
    args.modes = [int(x) for x in args.modes.split(",") if x.strip()]
    args.bitrate_list = [x.strip() for x in args.bitrates.split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")  # fmt: skip
    for noisy in ("heldar.fakecam", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result: dict[str, Any] = {
        "benchmark": "density",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "config": {k: v for k, v in vars(args).items() if k not in ("json_path",)},
        "targets": TARGETS,
        "bitrates": [],
    }
    t0 = time.monotonic()
    try:
        for bitrate in args.bitrate_list:

            def save(partial: dict[str, Any]) -> None:
                if args.json_path:
                    snapshot = {**result, "bitrates": [*result["bitrates"], partial], "partial": True}
                    Path(args.json_path).write_text(
                        json.dumps(snapshot, indent=2, default=str) + "\n", encoding="utf-8"
                    )

            result["bitrates"].append(run_bitrate(args, bitrate, save))
    except KeyboardInterrupt:
        logger.error("interrupted; everything stopped")
        return 130
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["duration_s"] = round(time.monotonic() - t0, 1)
    emit(result, table(result), args.json_path)
    return 1 if any(b["errors"] for b in result["bitrates"]) else 0


if __name__ == "__main__":
    sys.exit(main())
