"""The zone state machine: tracks in, zone events out. Pure and synchronous; time is always frame time.

State is kept per (camera, zone, track). Rules:

* Only detections with a ``track_id`` and a ``bbox`` count; per track the most confident one in a frame.
  The tested point is the bottom-centre of the box.
* Region membership flips only after ``confirm_frames`` (default 2) consecutive contrary observations;
  ``enter``/``exit`` carry the time of the first observation of that run (when the object really crossed).
* ``dwell`` fires once per visit, on the first observation at least ``dwell_seconds`` after the entry.
* Line zones A→B: a move from one strict side to the other whose path touches the segment is a crossing,
  ``cross_ab`` from the side where cross(A, B, p) > 0 (in image coordinates, y down: the right of A→B
  looking from A to B), ``cross_ba`` from the other; ``config.direction`` filters.
* A track not seen on its camera for ``track_timeout_s`` (frame time of that camera) is dropped; if it was
  inside a region it gets a synthetic ``exit`` stamped with its last sighting.
* Each camera has a watermark, the newest frame time processed; a batch at or before it is a duplicate or
  arrived out of order and is ignored, so neither can produce an event twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from heldar.perception.detections import Detection, DetectionBatch
from heldar.zones.geometry import Point, cross, ground_point, point_in_polygon, segments_touch
from heldar.zones.model import OpenVisit, ZoneEvent, ZoneSpec

logger = logging.getLogger(__name__)

DEFAULT_TRACK_TIMEOUT_S = 120.0


@dataclass
class TrackState:
    last_seen: datetime
    label: str | None = None
    inside: bool = False
    contrary: int = 0
    pending_since: datetime | None = None
    entered_at: datetime | None = None
    dwell_fired: bool = False
    last_side: int = 0  # line zones: the last strict side (+1 / -1), 0 before any
    last_off_point: Point | None = None


@dataclass
class CameraState:
    zones: dict[str, ZoneSpec] = field(default_factory=dict)
    tracks: dict[tuple[str, str], TrackState] = field(default_factory=dict)  # (zone_id, track_id)
    watermark: datetime | None = None


class ZoneMachine:
    def __init__(self, track_timeout_s: float = DEFAULT_TRACK_TIMEOUT_S) -> None:
        self.track_timeout = timedelta(seconds=track_timeout_s)
        self.cameras: dict[str, CameraState] = {}
        self.ignored_batches = 0

    # --- set-up ------------------------------------------------------------------------------------

    def camera(self, camera_id: str) -> CameraState:
        return self.cameras.setdefault(camera_id, CameraState())

    def set_zones(self, camera_id: str, zones: Iterable[ZoneSpec]) -> None:
        """Replace the camera's zones; state of removed zones (or zones whose kind changed) is dropped."""
        cam = self.camera(camera_id)
        new = {z.id: z for z in zones}
        for key in list(cam.tracks):
            old, now = cam.zones.get(key[0]), new.get(key[0])
            if now is None or (old is not None and old.kind != now.kind):
                del cam.tracks[key]
        cam.zones = new

    def restore(self, camera_id: str, watermark: datetime | None, visits: Iterable[OpenVisit]) -> None:
        """Resume after a restart: open visits are inside (no second ``enter``), last seen at the watermark."""
        cam = self.camera(camera_id)
        cam.watermark = watermark
        for v in visits:
            seen = max(watermark, v.entered_at) if watermark is not None else v.entered_at
            cam.tracks[(v.zone_id, v.track_id)] = TrackState(
                last_seen=seen, label=v.label, inside=True, entered_at=v.entered_at, dwell_fired=v.dwell_fired
            )

    def occupancy(self, camera_id: str) -> dict[str, int]:
        cam = self.camera(camera_id)
        counts = {zone_id: 0 for zone_id, z in cam.zones.items() if z.kind == "region"}
        for (zone_id, _), st in cam.tracks.items():
            if st.inside and zone_id in counts:
                counts[zone_id] += 1
        return counts

    # --- processing --------------------------------------------------------------------------------

    def observe(self, batch: DetectionBatch) -> list[ZoneEvent] | None:
        """Events for one frame, in time order; None when the batch is at or before the watermark."""
        cam = self.camera(batch.camera_id)
        ts = batch.captured_at
        if cam.watermark is not None and ts <= cam.watermark:
            self.ignored_batches += 1
            return None
        cam.watermark = ts
        events: list[ZoneEvent] = []
        for track_id, det in best_per_track(batch.detections).items():
            assert det.bbox is not None
            point = ground_point(det.bbox)
            for zone in cam.zones.values():
                if not zone.accepts(det.label, det.confidence):
                    continue
                key = (zone.id, track_id)
                if zone.kind == "line":
                    st = cam.tracks.setdefault(key, TrackState(last_seen=ts))
                    events.extend(_line_step(zone, st, track_id, det.label, point, ts))
                else:
                    inside = point_in_polygon(point, zone.points)
                    st_or_none = cam.tracks.get(key)
                    if st_or_none is None:
                        if not inside:
                            continue  # nothing to remember about a track outside a region
                        st_or_none = cam.tracks[key] = TrackState(last_seen=ts)
                    events.extend(_region_step(zone, st_or_none, track_id, det.label, inside, ts))
        events.extend(self.expire(batch.camera_id, ts))
        events.sort(key=lambda e: e.timestamp)
        return events

    def expire(self, camera_id: str, now: datetime) -> list[ZoneEvent]:
        """Drop tracks of this camera unseen since ``now - track_timeout``; inside ones get a synthetic exit."""
        cam = self.camera(camera_id)
        cutoff = now - self.track_timeout
        events = []
        for key, st in list(cam.tracks.items()):
            if st.last_seen >= cutoff:
                continue
            del cam.tracks[key]
            zone = cam.zones.get(key[0])
            if st.inside and zone is not None and zone.kind == "region":
                events.append(_exit(zone, key[1], st, st.last_seen, synthetic=True))
        return events


def best_per_track(detections: Iterable[Detection]) -> dict[str, Detection]:
    best: dict[str, Detection] = {}
    for det in detections:
        if not det.track_id or det.bbox is None or len(det.bbox) != 4:
            continue
        current = best.get(det.track_id)
        if current is None or (det.confidence or 0.0) > (current.confidence or 0.0):
            best[det.track_id] = det
    return best


def _exit(zone: ZoneSpec, track_id: str, st: TrackState, at: datetime, *, synthetic: bool = False) -> ZoneEvent:
    stayed = (at - st.entered_at).total_seconds() if st.entered_at is not None else None
    st.inside, st.entered_at, st.dwell_fired = False, None, False
    return ZoneEvent(zone.camera_id, zone.id, zone.name, track_id, "exit", at, zone.severity, st.label,
                     stayed, synthetic)  # fmt: skip


def _region_step(
    zone: ZoneSpec, st: TrackState, track_id: str, label: str | None, inside: bool, ts: datetime
) -> list[ZoneEvent]:
    st.last_seen, st.label = ts, label or st.label
    events: list[ZoneEvent] = []
    if inside == st.inside:
        st.contrary, st.pending_since = 0, None
    else:
        if st.contrary == 0:
            st.pending_since = ts
        st.contrary += 1
        if st.contrary >= zone.confirm_frames:
            at = st.pending_since or ts
            st.contrary, st.pending_since = 0, None
            if inside:
                st.inside, st.entered_at, st.dwell_fired = True, at, False
                events.append(ZoneEvent(zone.camera_id, zone.id, zone.name, track_id, "enter", at, zone.severity,
                                        st.label))  # fmt: skip
            else:
                events.append(_exit(zone, track_id, st, at))
    if st.inside and zone.dwell_seconds > 0 and not st.dwell_fired and st.entered_at is not None:
        stayed = (ts - st.entered_at).total_seconds()
        if stayed >= zone.dwell_seconds:
            st.dwell_fired = True
            events.append(ZoneEvent(zone.camera_id, zone.id, zone.name, track_id, "dwell", ts, zone.severity,
                                    st.label, stayed))  # fmt: skip
    return events


def _line_step(
    zone: ZoneSpec, st: TrackState, track_id: str, label: str | None, point: Point, ts: datetime
) -> list[ZoneEvent]:
    st.last_seen, st.label = ts, label or st.label
    a, b = zone.points[0], zone.points[1]
    value = cross(a, b, point)
    side = 1 if value > 1e-12 else -1 if value < -1e-12 else 0
    events: list[ZoneEvent] = []
    if side == 0:
        return events  # on the line: wait for the side it leaves to
    previous, start = st.last_side, st.last_off_point
    st.last_side, st.last_off_point = side, point
    if previous == 0 or previous == side or start is None:
        return events
    if not segments_touch(start, point, a, b):
        return events  # changed side beyond the ends of the line: went around it
    event_type = "cross_ab" if previous > 0 else "cross_ba"
    if zone.direction in ("any", event_type.removeprefix("cross_")):
        events.append(ZoneEvent(zone.camera_id, zone.id, zone.name, track_id, event_type, ts, zone.severity,
                                st.label))  # fmt: skip
    return events
