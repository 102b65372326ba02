"""A small IoU tracker: stable ``track_id`` for boxes that overlap from one frame to the next."""

from __future__ import annotations

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
