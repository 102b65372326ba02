"""Overhead phase: CPU seconds and PSS/RSS of heldar recording N cameras vs bare ffmpeg copying the same N streams.

Per N, both sides record the same simulator paths with the same argv (``build_recorder_argv``) and run a
warm-up, then the same measuring window. Bare: N ffmpeg children of this process. heldar: N camera
actors (each ``ray::CameraActor`` process plus its ffmpeg, reaped runs included) and the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.procs import (
    MB,
    CpuDelta,
    Mem,
    TreeCpu,
    children_memory,
    cpu_delta,
    is_ray_worker,
    memory,
    process_title,
    tree_cpu,
)
from bench.stack import Stack
from heldar.media.binary import ffmpeg_exe
from heldar.media.recorder_command import RecorderSpec, build_recorder_argv, recorder_env
from heldar.media.segment_names import ensure_day_dirs, list_segment_files, new_run_id

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def sim_path(index: int) -> str:
    return f"cam{index:02d}"


@dataclass(frozen=True)
class Group:
    """A process (tree) to account for in a window."""

    name: str
    pid: int
    children: bool
    kind: str  # camera | supervisor | bare | reference | infra


@dataclass
class Window:
    """CPU deltas and memory of every group over one measuring window."""

    seconds: float
    cpu: dict[str, CpuDelta]
    self_mem: dict[str, Mem | None]
    child_mem: dict[str, Mem]
    host: dict[str, Any]  # what else the machine did meanwhile (other people's tests share it)


def measure(groups: list[Group], seconds: float) -> Window:
    """CPU over ``seconds`` of every group; memory sampled at mid-window and at the end (mean of both)."""
    load_before = os.getloadavg()
    psutil.cpu_percent(interval=None)
    before: dict[str, TreeCpu] = {g.name: tree_cpu(g.pid, children=g.children) for g in groups}
    t0 = time.monotonic()
    time.sleep(seconds / 2)
    mem_a = {g.name: (memory(g.pid), children_memory(g.pid) if g.children else Mem()) for g in groups}
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    after: dict[str, TreeCpu] = {g.name: tree_cpu(g.pid, children=g.children) for g in groups}
    elapsed = time.monotonic() - t0
    host = {
        "system_cpu_busy_pct": psutil.cpu_percent(interval=None),
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    mem_b = {g.name: (memory(g.pid), children_memory(g.pid) if g.children else Mem()) for g in groups}
    self_mem: dict[str, Mem | None] = {}
    child_mem: dict[str, Mem] = {}
    for g in groups:
        (sa, ca), (sb, cb) = mem_a[g.name], mem_b[g.name]
        self_mem[g.name] = _mean_mem(sa, sb)
        child_mem[g.name] = _mean_mem(ca, cb) or Mem()
    cpu = {g.name: cpu_delta(before[g.name], after[g.name]) for g in groups}
    return Window(elapsed, cpu, self_mem, child_mem, host)


def _mean_mem(a: Mem | None, b: Mem | None) -> Mem | None:
    if a is None or b is None:
        return a or b
    return Mem((a.pss + b.pss) // 2, (a.rss + b.rss) // 2, (a.uss + b.uss) // 2)


def _mb(value: float) -> float:
    return round(value / MB, 2)


# --- context groups: the same in both windows ---------------------------------------------------------------
def context_groups(stack: Stack, idle_pid: int | None, exclude: set[int]) -> list[Group]:
    """The reference idle actor, Ray's own daemons, PostgreSQL, this driver (simulator included) and its encoder."""
    groups: list[Group] = []
    if idle_pid is not None:
        groups.append(Group("idle_ray_actor", idle_pid, False, "reference"))
    me = psutil.Process()
    groups.append(Group("driver_and_simulator", me.pid, False, "infra"))
    for proc in me.children(recursive=True):
        if proc.pid in exclude:
            continue
        if is_ray_worker(proc):
            title = process_title(proc.pid)
            if title.startswith("ray::") and title.endswith("Agent"):  # DashboardAgent, RuntimeEnvAgent
                groups.append(Group(title.removeprefix("ray::"), proc.pid, False, "infra"))
            continue
        try:
            name = proc.name()
            parent_is_worker = is_ray_worker(proc.parent()) if proc.parent() else False
        except psutil.NoSuchProcess:
            continue
        if parent_is_worker:
            continue
        if "ffmpeg" in name:
            groups.append(Group(f"simulator_encoder:{proc.pid}", proc.pid, False, "infra"))
        elif name in ("raylet", "gcs_server"):
            groups.append(Group(name, proc.pid, False, "infra"))
    pm = stack.postmaster_pid()
    if pm is not None and psutil.pid_exists(pm):
        groups.append(Group("postgres", pm, True, "infra"))
    return groups


def _context_report(window: Window, groups: list[Group]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in groups:
        if g.kind not in ("reference", "infra"):
            continue
        mem = window.self_mem.get(g.name) or Mem()
        out[g.name] = {**window.cpu[g.name].as_dict(), **mem.as_mb()}
    return out


# --- bare ffmpeg ----------------------------------------------------------------------------------------------
def _wait_output(dirs: list[Path], procs: list[subprocess.Popen[bytes]], timeout: float) -> float:
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a bare ffmpeg exited before writing output")
        if all(sum(f.size_bytes for f in list_segment_files(d)) > 0 for d in dirs):
            return time.monotonic() - t0
        time.sleep(0.2)
    raise TimeoutError(f"bare ffmpeg wrote nothing within {timeout:.0f}s")


@dataclass
class BareRun:
    """N bare ffmpeg recorders (heldar's own argv), children of this process."""

    n: int
    root: Path
    dirs: list[Path]
    procs: list[subprocess.Popen[bytes]]
    argv0: list[str]
    first_output_s: float = 0.0

    def groups(self) -> list[Group]:
        return [Group(f"ffmpeg:{sim_path(i)}", p.pid, False, "bare") for i, p in enumerate(self.procs)]

    def bytes_written(self) -> int:
        return sum(f.size_bytes for d in self.dirs for f in list_segment_files(d))


def start_bare(stack: Stack, n: int, *, segment_seconds: int, tag: str = "bare") -> BareRun:
    """Start N bare ffmpeg recorders on simulator paths 0..N-1 and wait until every one writes."""
    assert stack.sim is not None and stack.settings is not None
    root = stack.scratch / f"{tag}-{n}"
    run = BareRun(n, root, [root / sim_path(i) for i in range(n)], [], [])
    try:
        for i, d in enumerate(run.dirs):
            d.mkdir(parents=True, exist_ok=True)
            ensure_day_dirs(d, datetime.now(UTC))  # the segment muxer does not create the day folder
            spec = RecorderSpec(
                input_url=stack.sim.url(sim_path(i)),
                camera_dir=d,
                run_id=new_run_id(),
                segment_seconds=segment_seconds,
                timeout_s=stack.settings.rtsp_timeout_s,
            )
            argv = build_recorder_argv(spec, ffmpeg_exe())
            run.argv0 = run.argv0 or argv
            run.procs.append(
                subprocess.Popen(
                    argv,
                    env=recorder_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,
                )
            )
        run.first_output_s = _wait_output(run.dirs, run.procs, timeout=30 + n)
    except BaseException:
        stop_bare(run)
        raise
    return run


def stop_bare(run: BareRun) -> None:
    for p in run.procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    for p in run.procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    shutil.rmtree(run.root, ignore_errors=True)


def bare_report(run: BareRun, window: Window, written: int, ctx: list[Group] | None = None) -> dict[str, Any]:
    """The bare side of one window: CPU, stream rate, memory per camera."""
    own = run.groups()
    per = []
    for g in own:
        mem = window.self_mem[g.name] or Mem()
        per.append({"name": g.name, **window.cpu[g.name].as_dict(), **mem.as_mb()})
    cpu_total = sum(window.cpu[g.name].total_s for g in own)
    pss = [window.self_mem[g.name].pss for g in own if window.self_mem[g.name] is not None]  # type: ignore[union-attr]
    rss = [window.self_mem[g.name].rss for g in own if window.self_mem[g.name] is not None]  # type: ignore[union-attr]
    return {
        "argv_example": _mask_url(run.argv0),
        "first_output_s": round(run.first_output_s, 2),
        "window_s": round(window.seconds, 2),
        "host_during_window": window.host,
        "cpu_s": round(cpu_total, 3),
        "cpu_pct_of_one_core": round(100 * cpu_total / window.seconds, 2),
        "stream_kbps_per_camera": round(8 * written / 1000 / window.seconds / run.n, 1),
        "died": sum(1 for g in own if not window.cpu[g.name].alive),
        "pss_mb_per_camera": _mb(sum(pss) / len(pss)) if pss else None,
        "rss_mb_per_camera": _mb(sum(rss) / len(rss)) if rss else None,
        "processes": per,
        "context": _context_report(window, ctx) if ctx is not None else {},
    }


def run_bare(
    stack: Stack, n: int, *, segment_seconds: int, warmup_s: float, seconds: float, idle_pid: int | None
) -> dict[str, Any]:
    run = start_bare(stack, n, segment_seconds=segment_seconds)
    try:
        logger.info(
            "bare N=%d: all writing after %.1fs; warm-up %.0fs, window %.0fs", n, run.first_output_s, warmup_s, seconds
        )
        time.sleep(warmup_s)
        ctx = context_groups(stack, idle_pid, exclude={p.pid for p in run.procs})
        bytes0 = run.bytes_written()
        window = measure(run.groups() + ctx, seconds)
        written = run.bytes_written() - bytes0
    finally:
        stop_bare(run)
    return bare_report(run, window, written, ctx)


def _mask_url(argv: list[str]) -> list[str]:
    return [a if not a.startswith("rtsp://") else a.split("?")[0] for a in argv]


# --- heldar -----------------------------------------------------------------------------------------------------
def wait_recording(stack: Stack, ids: list[str], t0: float, timeout: float) -> dict[str, float]:
    """Seconds from ``t0`` until each camera's status row says ``recording`` (missing: never within timeout)."""
    seen: dict[str, float] = {}
    deadline = t0 + timeout
    last_log = time.monotonic()
    while len(seen) < len(ids) and time.monotonic() < deadline:
        states = stack.states(ids)
        now = time.monotonic()
        for camera_id, state in states.items():
            if state == "recording" and camera_id not in seen:
                seen[camera_id] = round(now - t0, 3)
        if now - last_log > 10:
            logger.info("  %d/%d recording after %.0fs", len(seen), len(ids), now - t0)
            last_log = now
        time.sleep(0.25)
    return seen


def run_heldar(
    stack: Stack,
    n: int,
    *,
    segment_seconds: int,
    warmup_s: float,
    seconds: float,
    idle_pid: int | None,
    supervisor_pid: int,
    start_timeout_s: float,
) -> dict[str, Any]:
    assert stack.sim is not None
    ids = [f"ov{n}-{i:02d}" for i in range(n)]
    stack.add_cameras([(cid, stack.sim.url(sim_path(i))) for i, cid in enumerate(ids)], segment_seconds)
    try:
        t0 = time.monotonic()
        stack.reconcile(ids[-1])
        reconcile_s = time.monotonic() - t0
        seen = wait_recording(stack, ids, t0, start_timeout_s)
        start = {
            "reconcile_call_s": round(reconcile_s, 3),
            "all_recording_s": max(seen.values()) if len(seen) == n else None,
            "first_recording_s": min(seen.values()) if seen else None,
            "median_recording_s": sorted(seen.values())[len(seen) // 2] if seen else None,
            "recording": len(seen),
            "of": n,
            "per_camera_s": seen,
        }
        logger.info("heldar N=%d: %d/%d recording, all after %s s", n, len(seen), n, start["all_recording_s"])
        time.sleep(warmup_s)
        health = stack.health(ids, timeout=30)
        groups = [Group(cid, h["actor_pid"], True, "camera") for cid, h in health.items() if h]
        sup = Group("supervisor", supervisor_pid, False, "supervisor")
        exclude = {g.pid for g in groups}
        ctx = context_groups(stack, idle_pid, exclude=exclude)
        window = measure([*groups, sup, *ctx], seconds)
        states_after = stack.states(ids)
        health_after = stack.health(ids, timeout=30)
    finally:
        removal_s = stack.remove_cameras(ids)
    per = []
    actor_cpu = ffmpeg_cpu = 0.0
    pss: list[int] = []
    rss: list[int] = []
    actor_pss: list[int] = []
    ffmpeg_pss: list[int] = []
    for g in groups:
        d = window.cpu[g.name]
        actor_cpu += d.self_s
        ffmpeg_cpu += d.children_s
        own = window.self_mem[g.name] or Mem()
        kids = window.child_mem[g.name]
        pss.append(own.pss + kids.pss)
        rss.append(own.rss + kids.rss)
        actor_pss.append(own.pss)
        ffmpeg_pss.append(kids.pss)
        h0, h1 = health.get(g.name) or {}, health_after.get(g.name) or {}
        per.append({
            "camera_id": g.name,
            "actor_pid": g.pid,
            **d.as_dict(),
            "actor": own.as_mb(),
            "ffmpeg": kids.as_mb(),
            "runs_in_window": (h1.get("runs", 0) - h0.get("runs", 0)) if h0 and h1 else None,
            "state_after": states_after.get(g.name),
        })  # fmt: skip
    sup_cpu = window.cpu["supervisor"].total_s
    sup_mem = window.self_mem["supervisor"] or Mem()
    cams_cpu = actor_cpu + ffmpeg_cpu
    k = max(1, len(groups))
    return {
        "start": start,
        "window_s": round(window.seconds, 2),
        "host_during_window": window.host,
        "cameras_measured": len(groups),
        "cpu_s": round(cams_cpu + sup_cpu, 3),
        "cameras_cpu_s": round(cams_cpu, 3),
        "actor_self_cpu_s": round(actor_cpu, 3),
        "ffmpeg_cpu_s": round(ffmpeg_cpu, 3),
        "supervisor_cpu_s": round(sup_cpu, 3),
        "cpu_pct_of_one_core": round(100 * (cams_cpu + sup_cpu) / window.seconds, 2),
        "ffmpeg_restarts_in_window": sum(1 for p in per if (p["runs_in_window"] or 0) > 0),
        "pss_mb_per_camera": _mb(sum(pss) / k),
        "pss_mb_per_camera_max": _mb(max(pss, default=0)),
        "rss_mb_per_camera": _mb(sum(rss) / k),
        "actor_pss_mb_per_camera": _mb(sum(actor_pss) / k),
        "ffmpeg_pss_mb_per_camera": _mb(sum(ffmpeg_pss) / k),
        "supervisor_mem": sup_mem.as_mb(),
        "removal_s": round(removal_s, 2),
        "cameras": per,
        "context": _context_report(window, ctx),
    }


def compare(bare: dict[str, Any], heldar: dict[str, Any]) -> dict[str, Any]:
    """heldar / bare ratios over the same window length."""
    b_cpu = bare["cpu_s"] / bare["window_s"]
    cams = heldar["cameras_cpu_s"] / heldar["window_s"]
    total = heldar["cpu_s"] / heldar["window_s"]
    ffmpeg = heldar["ffmpeg_cpu_s"] / heldar["window_s"]
    idle = heldar["context"].get("idle_ray_actor", {}).get("cpu_s")
    return {
        "cpu_ratio_with_supervisor": round(total / b_cpu, 3) if b_cpu else None,
        "cpu_ratio_cameras_only": round(cams / b_cpu, 3) if b_cpu else None,
        "cpu_ratio_ffmpeg_under_heldar": round(ffmpeg / b_cpu, 3) if b_cpu else None,
        "pss_ratio_per_camera": round(heldar["pss_mb_per_camera"] / bare["pss_mb_per_camera"], 3)
        if bare["pss_mb_per_camera"]
        else None,
        "extra_cpu_ms_per_camera_per_s": round(1000 * (total - b_cpu) / max(1, heldar["cameras_measured"]), 3),
        "actor_cpu_ms_per_camera_per_s": round(
            1000 * heldar["actor_self_cpu_s"] / heldar["window_s"] / max(1, heldar["cameras_measured"]), 3
        ),
        "idle_ray_actor_cpu_ms_per_s": round(1000 * idle / heldar["window_s"], 3) if idle is not None else None,
    }
