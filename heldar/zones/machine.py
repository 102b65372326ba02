"""The zone state machine: tracks in, zone events out. Pure and synchronous; time is always frame time.

State is kept per (camera, frame stream, zone, track). A frame stream is one producer of frames for a
camera: a kernel task (``k:<producer>:<task id>:<ms>`` frame ids) or a worker task type; see
:func:`stream_of`. Rules:

* Only detections with a ``track_id`` and a ``bbox`` count; per track the most confident one in a frame.
  The tested point is the bottom-centre of the box.
* Region membership flips only after ``confirm_frames`` (default 2) consecutive contrary observations;
  ``enter``/``exit`` carry the time of the first observation of that run (when the object really crossed).
* ``dwell`` fires once per visit, on the first observation at least ``dwell_seconds`` after the entry.
* Line zones A→B: a move from one strict side to the other whose path touches the segment is a crossing,
  ``cross_ab`` from the side where cross(A, B, p) > 0 (in image coordinates, y down: the right of A→B
  looking from A to B), ``cross_ba`` from the other; ``config.direction`` filters.
* A track not seen on its stream for ``track_timeout_s`` (frame time of that stream) is dropped; if it was
  inside a region it gets a synthetic ``exit`` stamped with its last sighting. :meth:`ZoneMachine.tick`
  advances an idle stream's frame time by the wall time since its newest batch, so a track that walked
  out of view gets its exit even when no further detection ever arrives.
* Each stream has a watermark, the newest frame time processed; a batch at or before it is a duplicate or
  arrived out of order and is ignored, so neither can produce an event twice. Two tasks on one camera, or
  the sub and main profiles, are separate streams and each counts.
* At most ``max_tracks`` tracks are kept per camera; beyond that the least recently seen is dropped (with
  a synthetic exit when it was inside), and counted in ``evicted_tracks``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from heldar.perception.detections import Detection, DetectionBatch
from heldar.zones.geometry import Point, cross, ground_point, point_in_polygon, segments_touch
from heldar.zones.model import OpenVisit, ZoneEvent, ZoneSpec

logger = logging.getLogger(__name__)

DEFAULT_TRACK_TIMEOUT_S = 120.0
DEFAULT_MAX_TRACKS = 2000


def stream_of(batch: DetectionBatch) -> str:
    """The frame stream of a batch: ``k:<task id>`` for kernel frames, ``w:<task type>`` for worker frames."""
    fid = batch.frame_id
    if fid.startswith("k:"):
        parts = fid.split(":")
        if len(parts) >= 4:
            return f"k:{parts[2]}"
    return f"w:{batch.task_type}"


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
class StreamState:
    tracks: dict[tuple[str, str], TrackState] = field(default_factory=dict)  # (zone_id, track_id)
    watermark: datetime | None = None
    received_at: float | None = None  # wall seconds when the newest batch was observed


@dataclass
class CameraState:
    zones: dict[str, ZoneSpec] = field(default_factory=dict)
    streams: dict[str, StreamState] = field(default_factory=dict)
    floor: datetime | None = None  # a camera-wide watermark from before streams: the default for new streams

    def stream(self, name: str) -> StreamState:
        st = self.streams.get(name)
        if st is None:
            st = self.streams[name] = StreamState(watermark=self.floor)
            legacy = self.streams.get("") if name else None
            if legacy is not None:  # visits written before streams: the first stream seen takes them over
                del self.streams[""]
                st.tracks.update(legacy.tracks)
        return st

    def track_count(self) -> int:
        return sum(len(s.tracks) for s in self.streams.values())


class ZoneMachine:
    def __init__(self, track_timeout_s: float = DEFAULT_TRACK_TIMEOUT_S, max_tracks: int = DEFAULT_MAX_TRACKS) -> None:
        self.track_timeout = timedelta(seconds=track_timeout_s)
        self.max_tracks = max_tracks
        self.cameras: dict[str, CameraState] = {}
        self.ignored_batches = 0
        self.evicted_tracks = 0

    # --- set-up ------------------------------------------------------------------------------------

    def camera(self, camera_id: str) -> CameraState:
        return self.cameras.setdefault(camera_id, CameraState())

    def set_zones(self, camera_id: str, zones: Iterable[ZoneSpec]) -> None:
        """Replace the camera's zones; state of removed zones (or zones whose kind changed) is dropped."""
        cam = self.camera(camera_id)
        new = {z.id: z for z in zones}
        for stream in cam.streams.values():
            for key in list(stream.tracks):
                old, now = cam.zones.get(key[0]), new.get(key[0])
                if now is None or (old is not None and old.kind != now.kind):
                    del stream.tracks[key]
        cam.zones = new

    def restore(
        self,
        camera_id: str,
        watermarks: Mapping[str, datetime] | datetime | None,
        visits: Iterable[OpenVisit],
        *,
        floor: datetime | None = None,
    ) -> None:
        """Resume after a restart: per-stream watermarks (a single datetime is a camera-wide floor, as
        written before streams existed); open visits are inside (no second ``enter``), last seen at their
        stream's watermark."""
        cam = self.camera(camera_id)
        if isinstance(watermarks, datetime):
            floor, watermarks = watermarks, {}
        cam.floor = floor
        for name, mark in (watermarks or {}).items():
            cam.stream(name).watermark = mark
        for v in visits:
            stream = cam.stream(v.stream)
            mark = stream.watermark
            seen = max(mark, v.entered_at) if mark is not None else v.entered_at
            stream.tracks[(v.zone_id, v.track_id)] = TrackState(
                last_seen=seen, label=v.label, inside=True, entered_at=v.entered_at, dwell_fired=v.dwell_fired
            )

    def occupancy(self, camera_id: str) -> dict[str, int]:
        cam = self.camera(camera_id)
        counts = {zone_id: 0 for zone_id, z in cam.zones.items() if z.kind == "region"}
        for stream in cam.streams.values():
            for (zone_id, _), st in stream.tracks.items():
                if st.inside and zone_id in counts:
                    counts[zone_id] += 1
        return counts

    def watermarks(self, camera_id: str) -> dict[str, datetime]:
        cam = self.camera(camera_id)
        return {name: s.watermark for name, s in cam.streams.items() if s.watermark is not None}

    # --- processing --------------------------------------------------------------------------------

    def observe(self, batch: DetectionBatch, received_at: float | None = None) -> list[ZoneEvent] | None:
        """Events for one frame, in time order; None when the batch is at or before its stream's watermark.
        ``received_at`` (wall seconds) lets :meth:`tick` advance this stream's time while it is idle."""
        cam = self.camera(batch.camera_id)
        name = stream_of(batch)
        stream = cam.stream(name)
        ts = batch.captured_at
        if stream.watermark is not None and ts <= stream.watermark:
            self.ignored_batches += 1
            return None
        stream.watermark = ts
        stream.received_at = received_at
        events: list[ZoneEvent] = []
        for track_id, det in best_per_track(batch.detections).items():
            assert det.bbox is not None
            point = ground_point(det.bbox)
            for zone in cam.zones.values():
                if not zone.accepts(det.label, det.confidence):
                    continue
                key = (zone.id, track_id)
                st = stream.tracks.get(key)
                if zone.kind == "line":
                    if st is None:
                        st = self._new_track(cam, stream, key, ts, events)
                    events.extend(_line_step(zone, st, track_id, det.label, point, ts, name))
                else:
                    inside = point_in_polygon(point, zone.points)
                    if st is None:
                        if not inside:
                            continue  # nothing to remember about a track outside a region
                        st = self._new_track(cam, stream, key, ts, events)
                    events.extend(_region_step(zone, st, track_id, det.label, inside, ts, name))
        events.extend(self._expire_stream(cam, name, stream, ts))
        events.sort(key=lambda e: e.timestamp)
        return events

    def _new_track(
        self, cam: CameraState, stream: StreamState, key: tuple[str, str], ts: datetime, events: list[ZoneEvent]
    ) -> TrackState:
        if cam.track_count() >= self.max_tracks:
            events.extend(self._evict_oldest(cam))
        st = stream.tracks[key] = TrackState(last_seen=ts)
        return st

    def _evict_oldest(self, cam: CameraState) -> list[ZoneEvent]:
        oldest: tuple[datetime, str, tuple[str, str]] | None = None
        for name, stream in cam.streams.items():
            for key, st in stream.tracks.items():
                if oldest is None or st.last_seen < oldest[0]:
                    oldest = (st.last_seen, name, key)
        if oldest is None:
            return []
        _, name, key = oldest
        st = cam.streams[name].tracks.pop(key)
        self.evicted_tracks += 1
        zone = cam.zones.get(key[0])
        if st.inside and zone is not None and zone.kind == "region":
            return [_exit(zone, key[1], st, st.last_seen, name, synthetic=True)]
        return []

    def expire(self, camera_id: str, now: datetime) -> list[ZoneEvent]:
        """Drop tracks of every stream of this camera unseen since ``now - track_timeout``; inside ones get a
        synthetic exit."""
        cam = self.camera(camera_id)
        events: list[ZoneEvent] = []
        for name, stream in cam.streams.items():
            events.extend(self._expire_stream(cam, name, stream, now))
        return events

    def tick(self, now_wall: float) -> dict[str, list[ZoneEvent]]:
        """Expire tracks of idle streams: a stream's frame time is taken to run on at wall speed since its
        newest batch. Returns the synthetic exits per camera."""
        out: dict[str, list[ZoneEvent]] = {}
        for camera_id, cam in self.cameras.items():
            events: list[ZoneEvent] = []
            for name, stream in cam.streams.items():
                if stream.watermark is None or stream.received_at is None or not stream.tracks:
                    continue
                idle = max(0.0, now_wall - stream.received_at)
                events.extend(self._expire_stream(cam, name, stream, stream.watermark + timedelta(seconds=idle)))
            if events:
                out[camera_id] = sorted(events, key=lambda e: e.timestamp)
        return out

    def _expire_stream(self, cam: CameraState, name: str, stream: StreamState, now: datetime) -> list[ZoneEvent]:
        cutoff = now - self.track_timeout
        events = []
        for key, st in list(stream.tracks.items()):
            if st.last_seen >= cutoff:
                continue
            del stream.tracks[key]
            zone = cam.zones.get(key[0])
            if st.inside and zone is not None and zone.kind == "region":
                events.append(_exit(zone, key[1], st, st.last_seen, name, synthetic=True))
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


def _exit(
    zone: ZoneSpec, track_id: str, st: TrackState, at: datetime, stream: str, *, synthetic: bool = False
) -> ZoneEvent:
    stayed = (at - st.entered_at).total_seconds() if st.entered_at is not None else None
    st.inside, st.entered_at, st.dwell_fired = False, None, False
    return ZoneEvent(zone.camera_id, zone.id, zone.name, track_id, "exit", at, zone.severity, st.label,
                     stayed, synthetic, stream)  # fmt: skip


def _region_step(
    zone: ZoneSpec, st: TrackState, track_id: str, label: str | None, inside: bool, ts: datetime, stream: str
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
                                        st.label, stream=stream))  # fmt: skip
            else:
                events.append(_exit(zone, track_id, st, at, stream))
    if st.inside and zone.dwell_seconds > 0 and not st.dwell_fired and st.entered_at is not None:
        stayed = (ts - st.entered_at).total_seconds()
        if stayed >= zone.dwell_seconds:
            st.dwell_fired = True
            events.append(ZoneEvent(zone.camera_id, zone.id, zone.name, track_id, "dwell", ts, zone.severity,
                                    st.label, stayed, stream=stream))  # fmt: skip
    return events


def _line_step(
    zone: ZoneSpec, st: TrackState, track_id: str, label: str | None, point: Point, ts: datetime, stream: str
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
                                st.label, stream=stream))  # fmt: skip
    return events
