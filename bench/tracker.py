"""Tracker comparison on the simulator scene: ID switches and spurious zone events per 100 track-seconds.

    python -m bench.tracker [--seconds 48] [--fps 5,2,0.5]

The scene (``heldar.fakecam.scene.render_frame``) has known trajectories: two walking figures crossing the
frame every ``period`` seconds. Frames are rendered at 10 fps, the ``person`` analyzer (OpenCV HOG) runs once
per frame, and each tracker sees the detections of every 10/fps-th frame, with the frame's time. A detection
is matched to the ground-truth figure whose box it overlaps best (IoU ≥ 0.3); a figure is one identity per
crossing. An **ID switch** is a change of track id between two consecutive matched sightings of one
identity. **Spurious zone events** are the zone enters and exits (a region over the middle 40 % of the
frame, ``confirm_frames`` 1) beyond one enter and one exit per identity that crossed it; **missed** ones are
those short of it. Rates are per 100 track-seconds (the time identities are in view). Prints JSON and a
table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from heldar.fakecam.scene import render_frame
from heldar.perception.analyzers import PersonAnalyzer
from heldar.perception.detections import Detection, DetectionBatch
from heldar.perception.tracker import IouTracker, MotionTracker, iou
from heldar.zones.machine import ZoneMachine
from heldar.zones.model import ZoneSpec

WIDTH, HEIGHT, PERIOD, BASE_FPS = 640, 360, 8.0, 10
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ZONE = ZoneSpec("zone_mid", "cam", "middle", "region", ((0.3, 0.0), (0.7, 0.0), (0.7, 1.0), (0.3, 1.0)),
                confirm_frames=1, min_confidence=0.0)  # fmt: skip


class _Raw:
    """Stands in for the analyzer's tracker: the raw detections come out."""

    def update(self, detections: list[Detection]) -> list[Detection]:
        return detections


def ground_truth(t: float) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(identity, normalised box) of each figure at ``t``, as ``render_frame`` draws them (in-view only)."""
    fig_h = HEIGHT * 0.5
    fig_w = fig_h / 8 * 2.8
    span = WIDTH + fig_w
    out = []
    for index, (offset, top) in enumerate(((0.0, 0.08), (0.5, 0.2))):
        phase = offset + t / PERIOD
        cx = (phase % 1.0) * span - fig_w / 2
        x0, x1 = max(0.0, cx - fig_w / 2), min(float(WIDTH), cx + fig_w / 2)
        if x1 - x0 < fig_w * 0.5:
            continue  # mostly outside the frame
        y0 = HEIGHT * top
        out.append((f"g{index}-{math.floor(phase)}", (x0 / WIDTH, y0 / HEIGHT, (x1 - x0) / WIDTH, fig_h / HEIGHT)))
    return out


def detect(seconds: float) -> list[tuple[float, list[Detection]]]:
    analyzer = PersonAnalyzer({"work_width": WIDTH})
    analyzer.tracker = _Raw()  # type: ignore[assignment]
    analyzer._track = lambda found, captured_at: found  # type: ignore[method-assign]
    frames = []
    for i in range(int(seconds * BASE_FPS)):
        t = i / BASE_FPS
        frames.append((t, analyzer.analyze(render_frame(WIDTH, HEIGHT, t, PERIOD), T0 + timedelta(seconds=t))))
    return frames


def evaluate(name: str, frames: list[tuple[float, list[Detection]]], fps: float) -> dict[str, Any]:
    step = max(1, round(BASE_FPS / fps))
    tracker: Any = MotionTracker() if name == "motion" else IouTracker()
    machine = ZoneMachine(track_timeout_s=10.0)
    machine.set_zones("cam", [ZONE])
    last_id: dict[str, str] = {}
    switches, events = 0, {"enter": 0, "exit": 0}
    seen_ids: set[str] = set()
    in_view: dict[str, int] = {}  # identity → frames in view (at this fps)
    crossed: set[str] = set()
    t = 0.0
    for i in range(0, len(frames), step):
        t, dets = frames[i]
        tracked = tracker.update(dets, t) if name == "motion" else tracker.update(dets)
        truth = ground_truth(t)
        for identity, box in truth:
            in_view[identity] = in_view.get(identity, 0) + 1
            cx = box[0] + box[2] / 2
            if 0.3 <= cx <= 0.7:
                crossed.add(identity)
        for det in tracked:
            if det.bbox is None or det.track_id is None:
                continue
            best = max(truth, key=lambda g: iou(g[1], det.bbox), default=None)  # type: ignore[arg-type]
            if best is None or iou(best[1], det.bbox) < 0.3:  # type: ignore[arg-type]
                continue
            seen_ids.add(det.track_id)
            previous = last_id.get(best[0])
            if previous is not None and previous != det.track_id:
                switches += 1
            last_id[best[0]] = det.track_id
        batch = DetectionBatch("cam", "person", f"f{i}", T0 + timedelta(seconds=t), tuple(tracked))
        for ev in machine.observe(batch) or []:
            if ev.event_type in events:
                events[ev.event_type] += 1
    for ev in machine.expire("cam", T0 + timedelta(seconds=t + 60)):
        events[ev.event_type] += 1
    track_seconds = sum(n * step / BASE_FPS for n in in_view.values())
    expected = len(crossed)
    spurious = sum(max(0, events[k] - expected) for k in events)
    missed = sum(max(0, expected - events[k]) for k in events)
    per100 = 100.0 / track_seconds if track_seconds else 0.0
    return {"tracker": name, "fps": fps, "track_seconds": round(track_seconds, 1), "identities": len(in_view),
            "crossings": expected, "id_switches": switches, "track_ids": len(seen_ids),
            "zone_enters": events["enter"], "zone_exits": events["exit"], "spurious_zone_events": spurious,
            "missed_zone_events": missed, "id_switches_per_100_s": round(switches * per100, 2),
            "spurious_per_100_s": round(spurious * per100, 2),
            "missed_per_100_s": round(missed * per100, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=48.0)
    parser.add_argument("--fps", default="5,2,0.5")
    args = parser.parse_args()
    started = time.perf_counter()
    frames = detect(args.seconds)
    detected = sum(len(d) for _, d in frames)
    results = [evaluate(name, frames, float(fps)) for fps in args.fps.split(",") for name in ("iou", "motion")]
    out = {"frames": len(frames), "detections": detected, "seconds_to_detect": round(time.perf_counter() - started, 1),
           "results": results}  # fmt: skip
    print(json.dumps(out, indent=2))
    print(f"\n{'tracker':8} {'fps':>4} {'track-s':>7} {'ID sw':>5} {'sw/100s':>8} {'spur':>5} {'spur/100s':>9} "
          f"{'missed':>6} {'ids':>4}")  # fmt: skip
    for r in results:
        print(f"{r['tracker']:8} {r['fps']:>4} {r['track_seconds']:>7} {r['id_switches']:>5} "
              f"{r['id_switches_per_100_s']:>8} {r['spurious_zone_events']:>5} {r['spurious_per_100_s']:>9} "
              f"{r['missed_zone_events']:>6} {r['track_ids']:>4}")  # fmt: skip


if __name__ == "__main__":
    main()
