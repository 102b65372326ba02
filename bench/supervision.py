"""Supervision benchmark: what a control-plane fault costs, and what the control and data plane cost to run.

    python -m bench.supervision [--cameras 32] [--runs 3] [--backlog 5000] [--skip-cpu] [--json out.json]

* **supervisor SIGKILL**: time until it supervises again (Ray restart + self-healing constructor, nobody calls
  it) and the longest pause in segment indexing around the kill (writers are not the supervisor).
* **standby takeover**: two supervisors on one database (two namespaces stand in for two ``heldar serve``); the
  active one's kernel is killed whole; time until the standby is active.
* **backlog**: a database-outage backlog of ``--backlog`` segments written through a ``recording-writer`` in
  the recorder's batches of 500, against the baseline of ``copy_records_to_table`` of the same rows on one
  connection (PostgreSQL's ceiling for this row shape) in the same run.
* **CPU at N cameras** with 2 s segments: supervisor and writers, ms of CPU per second, beside the cameras'
  own actors and ffmpeg for scale.

Prints JSON and a short table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from bench.stack import Stack

logger = logging.getLogger(__name__)
SEGMENT_S = 2


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def _ping(handle: Any) -> dict[str, Any] | None:
    import ray

    try:
        return dict(ray.get(handle.ping.remote(), timeout=2))
    except Exception:
        return None


def _supervising(ping: dict[str, Any] | None) -> bool:
    return bool(ping and ping["role"] == "active" and ping["loops"] and all(ping["loops"].values()))


def _segment_count(stack: Stack, camera_id: str) -> int:
    assert stack.db is not None
    return int(stack.db.fetch("SELECT count(*) AS n FROM segments WHERE camera_id = $1", camera_id)[0]["n"])


def _newest_created(stack: Stack, camera_id: str) -> list[datetime]:
    assert stack.db is not None
    rows = stack.db.fetch("SELECT created_at FROM segments WHERE camera_id = $1 ORDER BY created_at", camera_id)
    return [r["created_at"] for r in rows]


def bench_supervisor_kill(stack: Stack, runs: int) -> dict[str, Any]:
    assert stack.sim is not None
    stack.sim.add_camera("kill-sup")
    stack.add_cameras([("kill-sup", stack.sim.url("kill-sup"))], SEGMENT_S)
    stack.reconcile("kill-sup")
    _wait(lambda: _segment_count(stack, "kill-sup") >= 3, 60, "the camera to record")
    back_s, pauses = [], []
    for _ in range(runs):
        ping = _ping(stack.supervisor)
        assert ping is not None
        pid = int(ping["instance"].rsplit(":", 1)[1])
        killed_at = datetime.now(UTC)
        t = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        _wait(
            lambda ping=ping: (p := _ping(stack.supervisor)) and _supervising(p) and p["instance"] != ping["instance"],
            120,
            "the supervisor to come back",
            interval=0.05,
        )
        back_s.append(time.monotonic() - t)
        time.sleep(3 * SEGMENT_S)
        created = [c for c in _newest_created(stack, "kill-sup") if c >= killed_at - timedelta(seconds=10)]
        steps = [(b - a).total_seconds() for a, b in itertools.pairwise(created)]
        pauses.append(max(steps, default=float("nan")))
    return {
        "supervising_again_s": [round(x, 2) for x in back_s],
        "longest_index_pause_s": [round(x, 2) for x in pauses],
    }


def bench_takeover(stack: Stack, runs: int) -> dict[str, Any]:
    import ray

    from actors.handles import ensure_supervisor
    from config import load_settings

    assert stack.settings is not None and stack.sim is not None
    stack.sim.add_camera("takeover")
    stack.add_cameras([("takeover", stack.sim.url("takeover"))], SEGMENT_S)
    stack.reconcile("takeover")
    times = []
    active = stack.supervisor
    namespace = stack.namespace
    for run in range(runs):
        standby_ns = f"{stack.namespace}-standby{run}"
        settings = load_settings(
            ray_namespace=standby_ns,
            data_dir=stack.settings.data_dir,
            ray_dashboard=False,
            anr_enabled=False,
            supervisor_standby_poll_s=1.0,
        )
        standby = ensure_supervisor(settings, stack.url)
        assert (_ping(standby) or {}).get("role") == "standby"
        _wait(lambda ns=namespace: _camera_recording(ns, "takeover"), 60, "recording before the kill")
        t = time.monotonic()
        ray.kill(active, no_restart=True)
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] == namespace:
                ray.kill(ray.get_actor(entry["name"], namespace=namespace), no_restart=True)
        _wait(lambda s=standby: _supervising(_ping(s)), 60, "the standby to take over", interval=0.05)
        times.append(time.monotonic() - t)
        active, namespace = standby, standby_ns
    stack.supervisor = active
    stack.namespace = namespace
    return {"takeover_s": [round(x, 2) for x in times]}


def _camera_recording(namespace: str, camera_id: str) -> bool:
    import ray

    try:
        handle = ray.get_actor(f"camera:{camera_id}", namespace=namespace)
        return ray.get(handle.health.remote(), timeout=2)["state"] == "recording"
    except Exception:
        return False


def bench_backlog(stack: Stack, segments: int) -> dict[str, Any]:
    import ray

    from actors.writer import writer_name
    from heldar.recording.camera_recorder import FLUSH_MAX_SEGMENTS
    from heldar.recording.records import RecordingBatch, SegmentRecord

    assert stack.db is not None and stack.settings is not None
    stack.add_cameras([("backlog", "rtsp://127.0.0.1:9/none"), ("baseline", "rtsp://127.0.0.1:9/none")], SEGMENT_S)
    writer = ray.get_actor(writer_name(0), namespace=stack.namespace)  # the supervisor's, as cameras use it
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        SegmentRecord(
            f"{i:08d}_bench.mp4",
            start + timedelta(seconds=2 * i),
            start + timedelta(seconds=2 * i + 2),
            2.0,
            140_000,
            "h264",
            640,
            360,
            15.0,
        )
        for i in range(segments)
    ]
    t = time.monotonic()
    for i in range(0, segments, FLUSH_MAX_SEGMENTS):
        ray.get(writer.write_batch.remote(RecordingBatch("backlog", rows[i : i + FLUSH_MAX_SEGMENTS])), timeout=300)
    heldar_s = time.monotonic() - t

    records = [
        (
            f"seg_{uuid.uuid4().hex}",
            "baseline",
            r.file_name,
            r.start,
            r.end,
            r.duration_s,
            r.codec,
            r.width,
            r.height,
            r.fps,
            r.size_bytes,
            "live",
            True,
        )
        for r in rows
    ]

    async def copy() -> float:
        async with stack.db.pool.acquire() as conn:  # type: ignore[union-attr]
            t0 = time.monotonic()
            await conn.copy_records_to_table(
                "segments",
                records=records,
                columns=[
                    "id",
                    "camera_id",
                    "file_name",
                    "start_time",
                    "end_time",
                    "duration_s",
                    "codec",
                    "width",
                    "height",
                    "fps",
                    "size_bytes",
                    "source",
                    "kept",
                ],
            )
            return time.monotonic() - t0

    copy_s = stack.db.run(copy(), timeout=300)
    return {
        "segments": segments,
        "heldar_segments_per_s": round(segments / heldar_s),
        "copy_baseline_segments_per_s": round(segments / copy_s),
        "ratio": round(copy_s / heldar_s, 3),
    }


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def bench_cpu(stack: Stack, cameras: int, seconds: float) -> dict[str, Any]:
    import ray

    from actors.writer import writer_name

    assert stack.sim is not None
    ids = [f"cpu{i:03d}" for i in range(cameras)]
    for cid in ids:
        stack.sim.add_camera(cid)
    stack.add_cameras([(cid, stack.sim.url(cid)) for cid in ids], SEGMENT_S)
    stack.reconcile()
    _wait(lambda: all(h and h["state"] == "recording" for h in stack.health(ids).values()), 300, "all recording", 1)
    time.sleep(10)
    sup_pid = stack.supervisor_pid()
    writer_pids = []
    for index in range(8):
        try:
            handle = ray.get_actor(writer_name(index), namespace=stack.namespace)
        except ValueError:
            break
        writer_pids.append(int(ray.get(handle.ping.remote(), timeout=10)["pid"]))
    camera_pids = [h["actor_pid"] for h in stack.health(ids).values() if h]
    ffmpeg_pids = [h["pid"] for h in stack.health(ids).values() if h and h["pid"]]
    groups = {"supervisor": [sup_pid], "writers": writer_pids, "camera_actors": camera_pids, "ffmpeg": ffmpeg_pids}
    before = {k: _cpu(v) for k, v in groups.items()}
    time.sleep(seconds)
    after = {k: _cpu(v) for k, v in groups.items()}
    per_s = {k: round(1000 * (after[k] - before[k]) / seconds, 2) for k in groups}
    return {"cameras": cameras, "seconds": seconds, "cpu_ms_per_s": per_s, "writers": len(writer_pids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--cpu-seconds", type=float, default=60)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "load_avg": os.getloadavg()}
    with Stack() as stack:
        results["backlog"] = bench_backlog(stack, args.backlog)
        results["supervisor_kill"] = bench_supervisor_kill(stack, args.runs)
        if not args.skip_cpu:
            results["cpu"] = bench_cpu(stack, args.cameras, args.cpu_seconds)
        results["takeover"] = bench_takeover(stack, args.runs)
    print(json.dumps(results, indent=2, default=str))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=str)
    kill, take, backlog = results["supervisor_kill"], results["takeover"], results["backlog"]
    print("\n| measure | median | max |\n|---|---|---|")
    for label, values in (
        ("supervisor SIGKILL → supervising again (s)", kill["supervising_again_s"]),
        ("longest indexing pause around the kill (s)", kill["longest_index_pause_s"]),
        ("standby takeover (s)", take["takeover_s"]),
    ):
        print(f"| {label} | {statistics.median(values):.2f} | {max(values):.2f} |")
    print(
        f"\nbacklog: {backlog['heldar_segments_per_s']} segments/s through a writer vs "
        f"{backlog['copy_baseline_segments_per_s']} /s COPY baseline ({backlog['ratio']}x)"
    )
    if "cpu" in results:
        cpu = results["cpu"]
        print(
            f"CPU at {cpu['cameras']} cameras (ms per s): "
            + ", ".join(f"{k} {v}" for k, v in cpu["cpu_ms_per_s"].items())
        )


if __name__ == "__main__":
    main()
