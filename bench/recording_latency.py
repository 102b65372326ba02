"""Latency phase: drop-to-resume, stall-to-restart and SIGKILL-to-recording, with short segments.

Every sample starts from a steady camera (state ``recording`` and its current ffmpeg run has written a few
segments). Times are ``time.monotonic()`` seconds after the fault or the cure at ``T``:

* drop-to-resume: simulator path ``down`` for a while, ``resume`` at T → the first segment file of a new
  run appears on disk (polled every 50 ms), then holds media (its first fragment), then is indexed.
* stall-to-restart: ``stall`` at T → the stalled ffmpeg is gone or the state leaves ``recording``
  (detected), then a new ffmpeg pid (restarted); ``health()`` polled every 100 ms.
* SIGKILL-to-recording: SIGKILL the camera actor process at T → the first file of a new run, media, indexed.
  Each sample kills a different camera, so every kill is that camera's first (the supervisor's restart
  backoff grows with repeated kills of the same camera within 60 s).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.procs import summarise
from bench.stack import Stack
from heldar.media.segment_names import SegmentFile, list_segment_files

logger = logging.getLogger(__name__)

FILE_POLL_S = 0.05
HEALTH_POLL_S = 0.1
DB_POLL_S = 0.25
STEADY_FILES = 3


def run_started_wall(run_id: str) -> float | None:
    """The wall time (POSIX s) a run id was made: its first 8 base36 chars are epoch milliseconds."""
    try:
        return int(run_id[:8], 36) / 1000.0
    except ValueError:
        return None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def wait_steady(stack: Stack, camera_id: str, timeout: float = 60.0, phase_s: float = 0.0) -> dict[str, Any]:
    """Wait until the camera records and its current run has written ``STEADY_FILES`` files, then a random
    0..``phase_s`` more (the fault must not always land just after a segment boundary, which is when ffmpeg's
    bytes reach the disk and the stall watchdog sees progress); returns its health."""
    deadline = time.monotonic() + timeout
    directory = stack.camera_dir(camera_id)
    while time.monotonic() < deadline:
        h = stack.one_health(camera_id)
        if h and h.get("state") == "recording" and h.get("pid") and h.get("run_id"):
            files = [f for f in list_segment_files(directory) if f.run_id == h["run_id"]]
            if len(files) >= STEADY_FILES:
                if phase_s <= 0:
                    return h
                time.sleep(random.uniform(0.0, phase_s))
                return stack.one_health(camera_id) or h
        time.sleep(0.25)
    raise TimeoutError(f"camera {camera_id} not steadily recording within {timeout:.0f}s")


def watch_new_run(
    stack: Stack, camera_id: str, known_runs: set[str], t0: float, t0_wall: float, timeout: float = 30.0
) -> dict[str, Any]:
    """Poll the camera directory (50 ms) and the segments table (250 ms) for the first file of a new run."""
    assert stack.db is not None
    directory: Path = stack.camera_dir(camera_id)
    out: dict[str, Any] = {"file_s": None, "media_s": None, "indexed_s": None, "run_id": None}
    first: SegmentFile | None = None
    next_db = 0.0
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        if first is None:
            new = [f for f in list_segment_files(directory) if f.run_id not in known_runs and not f.is_backfill]
            if new:
                first = min(new, key=lambda f: (f.start, f.name))
                out.update(file_s=now - t0, run_id=first.run_id, first_seen_bytes=first.size_bytes)
                started = run_started_wall(first.run_id)
                out["run_started_s"] = None if started is None else started - t0_wall
        elif out["media_s"] is None:
            with contextlib.suppress(FileNotFoundError):
                size = first.path.stat().st_size
                if size > out["first_seen_bytes"]:
                    out["media_s"] = now - t0
        if first is not None and out["indexed_s"] is None and now >= next_db:
            next_db = now + DB_POLL_S
            rows = stack.db.fetch(
                "SELECT file_name FROM segments WHERE camera_id = $1 AND file_name LIKE $2 LIMIT 1",
                camera_id,
                f"%{first.run_id}.mp4",
            )
            if rows:
                out["indexed_s"] = time.monotonic() - t0
        if out["file_s"] is not None and out["media_s"] is not None and out["indexed_s"] is not None:
            break
        time.sleep(FILE_POLL_S)
    return {k: _r(v) if isinstance(v, float) else v for k, v in out.items()}


def _known_runs(stack: Stack, camera_id: str) -> set[str]:
    return {f.run_id for f in list_segment_files(stack.camera_dir(camera_id))}


# --- the three measurements -----------------------------------------------------------------------------------
def drop_once(stack: Stack, camera_id: str, path: str, down_s: float, phase_s: float) -> dict[str, Any]:
    assert stack.sim is not None
    wait_steady(stack, camera_id, phase_s=phase_s)
    stack.sim.set_fault(path, "down")
    time.sleep(down_s)
    known = _known_runs(stack, camera_id)
    t0_wall, t0 = time.time(), time.monotonic()
    stack.sim.set_fault(path, "resume")
    sample = watch_new_run(stack, camera_id, known, t0, t0_wall)
    h = stack.one_health(camera_id) or {}
    sample.update(down_s=down_s, reconnects=h.get("reconnects"), last_cause=h.get("last_cause"))
    return sample


def stall_once(stack: Stack, camera_id: str, path: str, phase_s: float, timeout: float = 30.0) -> dict[str, Any]:
    assert stack.sim is not None
    h0 = wait_steady(stack, camera_id, phase_s=phase_s)
    old_pid = h0["pid"]
    files = [f for f in list_segment_files(stack.camera_dir(camera_id)) if f.run_id == h0.get("run_id")]
    t0 = time.monotonic()
    stack.sim.set_fault(path, "stall")
    since_write = time.time() - max((f.mtime for f in files), default=time.time())
    detected: float | None = None
    restarted: float | None = None
    state_left: float | None = None
    cause = None
    try:
        while time.monotonic() - t0 < timeout:
            h = stack.one_health(camera_id, timeout=2.0)
            now = time.monotonic() - t0
            if h:
                if state_left is None and h.get("state") != "recording":
                    state_left = now
                if detected is None and (h.get("pid") != old_pid or h.get("state") != "recording"):
                    detected = now
                if h.get("pid") and h["pid"] != old_pid:
                    restarted = now
                    cause = h.get("last_cause")
                    break
            time.sleep(HEALTH_POLL_S)
    finally:
        stack.sim.set_fault(path, "resume")
    return {
        "detected_s": _r(detected),
        "restarted_s": _r(restarted),
        "state_left_recording_s": _r(state_left),
        "cause": cause,
        "last_write_before_s": round(since_write, 3),
        "old_ffmpeg_pid": old_pid,
    }


def kill_once(stack: Stack, camera_id: str, phase_s: float) -> dict[str, Any]:
    h0 = wait_steady(stack, camera_id, phase_s=phase_s)
    actor_pid, ffmpeg_pid = h0["actor_pid"], h0["pid"]
    known = _known_runs(stack, camera_id)
    t0_wall, t0 = time.time(), time.monotonic()
    os.kill(actor_pid, signal.SIGKILL)
    sample = watch_new_run(stack, camera_id, known, t0, t0_wall)
    h1 = stack.one_health(camera_id, timeout=5.0) or {}
    if h1.get("uptime_s") is not None and h1.get("actor_pid") != actor_pid:
        # CLOCK_MONOTONIC is one clock for every process on the host: when the new actor's recorder was built
        sample["new_actor_up_s"] = _r(time.monotonic() - h1["uptime_s"] - t0)
    orphan = False
    with contextlib.suppress(psutil.NoSuchProcess):
        orphan = psutil.Process(ffmpeg_pid).status() != psutil.STATUS_ZOMBIE
    sample.update(old_actor_pid=actor_pid, new_actor_pid=h1.get("actor_pid"), ffmpeg_orphaned=orphan)
    return sample


def _repeat(what: str, runs: int, once: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    samples = []
    for i in range(runs):
        try:
            sample = once(i)
        except Exception as exc:
            logger.warning("%s run %d failed: %s", what, i + 1, exc)
            sample = {"error": f"{exc.__class__.__name__}: {exc}"}
        logger.info("%s run %d/%d: %s", what, i + 1, runs, sample)
        samples.append(sample)
    return samples


def run_latency(stack: Stack, *, runs: int, segment_seconds: int, down_s: float) -> dict[str, Any]:
    assert stack.sim is not None
    drop_id, stall_id = "lat-drop", "lat-stall"
    kill_ids = [f"lat-kill-{i}" for i in range(runs)]
    all_ids = [drop_id, stall_id, *kill_ids]
    for cid in all_ids:
        stack.sim.add_camera(cid)
    stack.add_cameras([(cid, stack.sim.url(cid)) for cid in all_ids], segment_seconds)
    phase = float(segment_seconds)
    t0 = time.monotonic()
    stack.reconcile(all_ids[-1])
    try:
        for cid in all_ids:
            wait_steady(stack, cid, timeout=120)
        logger.info("latency: %d cameras steady after %.1fs", len(all_ids), time.monotonic() - t0)
        drops = _repeat("drop-to-resume", runs, lambda i: drop_once(stack, drop_id, drop_id, down_s, phase))
        stalls = _repeat("stall-to-restart", runs, lambda i: stall_once(stack, stall_id, stall_id, phase))
        kills = _repeat("sigkill-to-recording", runs, lambda i: kill_once(stack, kill_ids[i], phase))
    finally:
        stack.remove_cameras(all_ids)
        for cid in all_ids:
            with contextlib.suppress(Exception):
                stack.sim.remove_camera(cid)

    def col(samples: list[dict[str, Any]], key: str) -> dict[str, object]:
        return summarise(s.get(key) for s in samples)

    return {
        "segment_seconds": segment_seconds,
        "runs": runs,
        "drop_to_resume": {
            "down_s": down_s,
            "summary": {k: col(drops, k) for k in ("file_s", "media_s", "indexed_s", "run_started_s")},
            "samples": drops,
        },
        "stall_to_restart": {
            "summary": {
                k: col(stalls, k)
                for k in ("detected_s", "restarted_s", "state_left_recording_s", "last_write_before_s")
            },
            "samples": stalls,
        },
        "sigkill_to_recording": {
            "summary": {k: col(kills, k) for k in ("file_s", "media_s", "indexed_s", "new_actor_up_s")},
            "samples": kills,
        },
    }
