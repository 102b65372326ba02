"""A small IoU tracker: stable ``track_id`` for boxes that overlap from one frame to the next."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from heldar.perception.detections import Detection

BBox = tuple[float, float, float, float]


def iou(a: BBox, b: BBox) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _centre_distance(a: BBox, b: BBox) -> float:
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return float((dx * dx + dy * dy) ** 0.5)


@dataclass
class _Track:
    track_id: str
    label: str | None
    bbox: BBox
    missed: int = 0


class IouTracker:
    """Greedy matching by IoU (or, for fast small objects, a near centre) within the same label.

    A track survives ``max_missed`` frames without a match; ids are ``t<n>`` and never reused.
    """

    def __init__(self, min_iou: float = 0.2, max_centre_jump: float = 0.15, max_missed: int = 5) -> None:
        self.min_iou = min_iou
        self.max_centre_jump = max_centre_jump
        self.max_missed = max_missed
        self.tracks: list[_Track] = []
        self._next = 1

    def update(self, detections: list[Detection]) -> list[Detection]:
        candidates: list[tuple[float, int, int]] = []
        for di, det in enumerate(detections):
            if det.bbox is None:
                continue
            for ti, track in enumerate(self.tracks):
                if track.label != det.label:
                    continue
                overlap = iou(track.bbox, det.bbox)
                if overlap >= self.min_iou:
                    candidates.append((1.0 + overlap, ti, di))
                elif _centre_distance(track.bbox, det.bbox) <= self.max_centre_jump:
                    candidates.append((1.0 - _centre_distance(track.bbox, det.bbox), ti, di))
        candidates.sort(reverse=True)
        matched_tracks: set[int] = set()
        assigned: dict[int, str] = {}
        for _, ti, di in candidates:
            if ti in matched_tracks or di in assigned:
                continue
            matched_tracks.add(ti)
            track = self.tracks[ti]
            track.bbox, track.missed = detections[di].bbox, 0  # type: ignore[assignment]
            assigned[di] = track.track_id
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        out = []
        for di, det in enumerate(detections):
            if det.bbox is None:
                out.append(det)
                continue
            if di not in assigned:
                track = _Track(f"t{self._next}", det.label, det.bbox)
                self._next += 1
                self.tracks.append(track)
                assigned[di] = track.track_id
            out.append(replace(det, track_id=assigned[di]))
        return out


@dataclass
class _MotionTrack:
    track_id: str
    label: str | None
    cx: float
    cy: float
    w: float
    h: float
    t: float  # seconds of the last update
    vx: float = 0.0  # per second
    vy: float = 0.0
    hits: int = 1
    missed: int = 0

    def predict(self, t: float) -> tuple[float, float, float, float]:
        dt = max(0.0, t - self.t)
        cx, cy = self.cx + self.vx * dt, self.cy + self.vy * dt
        return (cx - self.w / 2, cy - self.h / 2, self.w, self.h)

    def update(self, box: BBox, t: float, alpha: float, beta: float) -> None:
        dt = max(1e-3, t - self.t)
        zx, zy = box[0] + box[2] / 2, box[1] + box[3] / 2
        px, py = self.cx + self.vx * dt, self.cy + self.vy * dt
        if self.hits == 1:  # the second sighting: the velocity is the displacement
            self.vx, self.vy = (zx - self.cx) / dt, (zy - self.cy) / dt
            self.cx, self.cy = zx, zy
        else:  # alpha-beta filter: the steady state of a constant-velocity Kalman filter
            rx, ry = zx - px, zy - py
            self.cx, self.cy = px + alpha * rx, py + alpha * ry
            self.vx, self.vy = self.vx + beta * rx / dt, self.vy + beta * ry / dt
        self.w, self.h = 0.5 * self.w + 0.5 * box[2], 0.5 * self.h + 0.5 * box[3]
        self.t, self.hits, self.missed = t, self.hits + 1, 0


class MotionTracker:
    """Motion-predicting tracker (ByteTrack-style association over an alpha-beta constant-velocity filter).

    Each track predicts where its box is at the frame's time (so association works at any fps, also when an
    object moves more than its own width between frames). Detections are matched in two rounds, confident
    ones first (``high_confidence``), then the rest, each round greedy by IoU with the predicted box (or by
    the distance within the gate, see ``_score``), tracks seen more than once first. A track survives
    ``max_missed`` frames or ``max_age_s`` seconds, whichever is longer. Ids are ``m<n>``.
    """

    def __init__(self, *, gate: float = 1.0, high_confidence: float = 0.5, max_missed: int = 5,
                 max_age_s: float = 4.0, max_speed: float = 0.25, alpha: float = 0.7,
                 beta: float = 0.3) -> None:  # fmt: skip
        self.gate, self.high, self.max_speed = gate, high_confidence, max_speed
        self.max_missed, self.max_age_s = max_missed, max_age_s
        self.alpha, self.beta = alpha, beta
        self.tracks: list[_MotionTrack] = []
        self._next = 1

    def _score(self, track: _MotionTrack, box: BBox, t: float) -> float | None:
        """Match score of ``box`` against the track's prediction at ``t``; None when outside the gate. The gate
        is ``gate`` box sizes per axis around the prediction, widened by how far the object may have gone:
        ``max_speed x dt`` while the velocity is unknown (one sighting), half the predicted travel after."""
        predicted = track.predict(t)
        dt = max(0.0, t - track.t)
        slack = self.max_speed * dt if track.hits == 1 else 0.5 * math.hypot(track.vx, track.vy) * dt
        dx = abs((predicted[0] + predicted[2] / 2) - (box[0] + box[2] / 2))
        dy = abs((predicted[1] + predicted[3] / 2) - (box[1] + box[3] / 2))
        gate_x = self.gate * max(box[2], track.w) + slack
        gate_y = self.gate * 0.5 * max(box[3], track.h) + slack
        if dx > gate_x or dy > gate_y:
            return None
        overlap = iou(predicted, box)
        return 1.0 + overlap if overlap > 0.05 else 1.0 - 0.5 * (dx / gate_x + dy / gate_y)

    def _match(self, t: float, dets: list[int], detections: list[Detection], free: set[int],
               assigned: dict[int, str]) -> None:  # fmt: skip
        candidates = []
        for di in dets:
            det = detections[di]
            assert det.bbox is not None
            for ti in free:
                track = self.tracks[ti]
                if track.label != det.label:
                    continue
                score = self._score(track, det.bbox, t)
                if score is not None:
                    candidates.append((score + (0.5 if track.hits > 1 else 0.0), ti, di))
        candidates.sort(reverse=True)
        for _, ti, di in candidates:
            if ti not in free or di in assigned:
                continue
            free.discard(ti)
            track = self.tracks[ti]
            track.update(detections[di].bbox, t, self.alpha, self.beta)  # type: ignore[arg-type]
            assigned[di] = track.track_id

    def update(self, detections: list[Detection], t: float | None = None) -> list[Detection]:
        """``t``: the frame's time in seconds (capture time); without it frames are taken 1 s apart."""
        if t is None:
            t = (max((tr.t for tr in self.tracks), default=0.0)) + 1.0
        free = set(range(len(self.tracks)))
        assigned: dict[int, str] = {}
        boxed = [i for i, d in enumerate(detections) if d.bbox is not None]
        high = [i for i in boxed if (detections[i].confidence or 0.0) >= self.high]
        low = [i for i in boxed if i not in set(high)]
        self._match(t, high, detections, free, assigned)
        self._match(t, low, detections, free, assigned)
        keep = []
        for ti, track in enumerate(self.tracks):
            if ti in free:
                track.missed += 1
                if track.missed > self.max_missed and t - track.t > self.max_age_s:
                    continue
            keep.append(track)
        self.tracks = keep
        out = []
        for di, det in enumerate(detections):
            if det.bbox is None:
                out.append(det)
                continue
            if di not in assigned:
                x, y, w, h = det.bbox
                track = _MotionTrack(f"m{self._next}", det.label, x + w / 2, y + h / 2, w, h, t)
                self._next += 1
                self.tracks.append(track)
                assigned[di] = track.track_id
            out.append(replace(det, track_id=assigned[di]))
        return out
