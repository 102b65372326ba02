"""``ZoneEngine``: the ``DetectionConsumer`` that runs the zone state machine over a camera's batches and
persists what it derives (``zone_events``, ``zone_<type>`` rows in ``events``, occupancy, the watermark).

Per camera, on the first batch, the engine loads the camera's enabled zones and resumes from the database:
the watermark of each frame stream (newest frame processed) and the open visits, so a restarted engine
neither re-announces an ``enter`` nor re-processes frames it already saw. Zones are re-read every
``zone_refresh_s`` (or at once after ``invalidate``). Batches of one camera are processed one at a time.

:meth:`ZoneEngine.tick` (the ingest actor calls it every second) expires tracks of streams that went quiet,
so an ``exit`` (and the occupancy drop, and the end of an event-mode window) comes within
``track_timeout_s`` even when no further detection arrives. Frames dated more than ``FUTURE_SLACK_S`` ahead
of the server clock are ignored (and counted), and so are stored watermarks that far ahead: one bad clock
cannot freeze a camera's zones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from heldar.perception.detections import DetectionBatch
from heldar.recording.event_mode import zone_trigger_hook
from heldar.store import zones as zone_store
from heldar.zones.evidence import EVIDENCE_TYPES, FrameSource, evidence_root, store_evidence
from heldar.zones.geometry import GeometryError
from heldar.zones.machine import DEFAULT_MAX_TRACKS, DEFAULT_TRACK_TIMEOUT_S, ZoneMachine, stream_of
from heldar.zones.model import ZoneEvent, ZoneSpec

logger = logging.getLogger(__name__)

EventHook = Callable[[Sequence[ZoneEvent]], Awaitable[None]]
FUTURE_SLACK_S = 60.0


class ZoneEngine:
    name = "zones"

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        track_timeout_s: float = DEFAULT_TRACK_TIMEOUT_S,
        zone_refresh_s: float = 5.0,
        watermark_every_s: float = 5.0,
        hooks: Sequence[EventHook] = (),
        max_tracks: int = DEFAULT_MAX_TRACKS,
        clock: Callable[[], float] = time.time,
        frame_source: FrameSource | None = None,
        evidence_dir: Path | None = None,
    ) -> None:
        self._pool = pool
        self.machine = ZoneMachine(track_timeout_s, max_tracks)
        self._clock = clock
        self._frame_source = frame_source if evidence_dir is not None else None
        self._evidence_dir = evidence_dir
        self.future_batches = 0
        self.evidence_frames = 0
        self._zone_refresh_s = zone_refresh_s
        self._watermark_every = timedelta(seconds=watermark_every_s)
        self._hooks = list(hooks)  # e.g. event-mode recording triggers; called with newly written events
        self._loaded_at: dict[str, float] = {}
        self._saved_watermark: dict[str, dict[str, datetime]] = {}  # camera → stream → saved watermark
        self._occupancy: dict[str, dict[str, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def invalidate(self, camera_id: str | None = None) -> None:
        """Re-read zones before the next batch (of ``camera_id``, or of every camera)."""
        for cam in [camera_id] if camera_id else list(self._loaded_at):
            self._loaded_at[cam] = float("-inf")

    async def consume(self, batch: DetectionBatch) -> None:
        now = self._clock()
        if batch.captured_at.timestamp() > now + FUTURE_SLACK_S:
            self.future_batches += 1
            logger.warning("zones: ignored batch %s of %s dated %s, ahead of the server clock", batch.frame_id,
                           batch.camera_id, batch.captured_at.isoformat())  # fmt: skip
            return
        lock = self._locks.setdefault(batch.camera_id, asyncio.Lock())
        async with lock:
            await self._ensure_loaded(batch.camera_id)
            events = self.machine.observe(batch, received_at=now)
            if events is None:
                logger.debug("zones: ignored batch %s of %s at or before its stream's watermark", batch.frame_id,
                             batch.camera_id)  # fmt: skip
                return
            try:
                await self._persist(batch.camera_id, events, {stream_of(batch): batch.captured_at})
            except BaseException:
                # forget this camera: the next batch resumes from what the database holds, so a replay of
                # this batch is processed again rather than ignored as already seen
                self._forget(batch.camera_id)
                raise

    def _forget(self, camera_id: str) -> None:
        self.machine.cameras.pop(camera_id, None)
        for table in (self._loaded_at, self._saved_watermark, self._occupancy):
            table.pop(camera_id, None)

    async def expire_idle(self, camera_id: str, now: datetime) -> None:
        """Synthesise exits for a camera that sent nothing for a while (``now`` in that camera's frame time,
        e.g. the last frame time plus the silence); for sources that stop sending frames altogether."""
        lock = self._locks.setdefault(camera_id, asyncio.Lock())
        async with lock:
            await self._ensure_loaded(camera_id)
            await self._persist(camera_id, self.machine.expire(camera_id, now), {})

    async def tick(self) -> int:
        """Expire tracks of streams that went quiet (frame time advanced by the wall time since their newest
        batch) and persist the synthetic exits; returns how many events were derived."""
        derived = self.machine.tick(self._clock())
        for camera_id, events in derived.items():
            lock = self._locks.setdefault(camera_id, asyncio.Lock())
            async with lock:
                try:
                    await self._persist(camera_id, events, {})
                except BaseException:
                    self._forget(camera_id)
                    raise
        return sum(len(e) for e in derived.values())

    def stats(self) -> dict[str, int]:
        return {"ignored_batches": self.machine.ignored_batches, "future_batches": self.future_batches,
                "evidence_frames": self.evidence_frames,
                "evicted_tracks": self.machine.evicted_tracks,
                "tracks": sum(c.track_count() for c in self.machine.cameras.values())}  # fmt: skip

    async def _ensure_loaded(self, camera_id: str) -> None:
        loaded = self._loaded_at.get(camera_id)
        if loaded is not None and time.monotonic() - loaded < self._zone_refresh_s:
            return
        specs = []
        for row in await zone_store.list_zones(self._pool, camera_id, enabled_only=True):
            try:
                specs.append(ZoneSpec.from_row(row))
            except (GeometryError, KeyError, TypeError, ValueError) as exc:
                logger.warning("zones: skipping zone %s of %s: %s", row.get("id"), camera_id, exc)
        self.machine.set_zones(camera_id, specs)
        if loaded is None:  # first time this process sees the camera: resume from the database
            floor, marks, visits = await zone_store.engine_resume_state(self._pool, camera_id)
            horizon = self._clock() + FUTURE_SLACK_S  # a watermark in the future is a bad clock: ignore it
            marks = {k: v for k, v in marks.items() if v.timestamp() <= horizon}
            if floor is not None and floor.timestamp() > horizon:
                floor = None
            known = {s.id for s in specs}
            self.machine.restore(camera_id, marks, [v for v in visits if v.zone_id in known], floor=floor)
            self._saved_watermark[camera_id] = dict(marks)
            self._occupancy[camera_id] = self.machine.occupancy(camera_id)
        self._loaded_at[camera_id] = time.monotonic()

    async def _persist(self, camera_id: str, events: list[ZoneEvent], frames: dict[str, datetime]) -> None:
        counts = self.machine.occupancy(camera_id)
        previous = self._occupancy.get(camera_id, {})
        changed = {z: c for z, c in counts.items() if previous.get(z) != c}
        saved = self._saved_watermark.setdefault(camera_id, {})
        watermarks = {
            stream: at
            for stream, at in frames.items()
            if events or changed or stream not in saved or at - saved[stream] >= self._watermark_every
        }
        if not events and not changed and not watermarks:
            return
        events = await self._with_evidence(camera_id, events)
        written = await zone_store.record_engine_output(
            self._pool, camera_id, events, occupancy_changes=changed, watermarks=watermarks
        )
        self._occupancy[camera_id] = counts
        saved.update(watermarks)
        if written:
            fresh = [w["event"] for w in written]
            for hook in self._hooks:
                try:
                    await hook(fresh)
                except Exception as exc:  # a hook never stops the engine
                    logger.warning("zones: event hook %r failed: %s", hook, exc)

    async def _with_evidence(self, camera_id: str, events: list[ZoneEvent]) -> list[ZoneEvent]:
        """The frame's JPEG for enter, dwell and crossings (one file per frame); never fails the write."""
        if self._frame_source is None or self._evidence_dir is None:
            return events
        if not any(e.event_type in EVIDENCE_TYPES and not e.synthetic for e in events):
            return events
        try:
            jpeg = await asyncio.wait_for(self._frame_source(camera_id), 2.0)
            if not jpeg:
                return events
            url = await asyncio.to_thread(store_evidence, self._evidence_dir, camera_id, jpeg)
        except Exception as exc:
            logger.warning("zones: no evidence frame for %s: %s", camera_id, exc.__class__.__name__)
            return events
        self.evidence_frames += 1
        return [replace(e, evidence_url=url) if e.event_type in EVIDENCE_TYPES and not e.synthetic else e
                for e in events]  # fmt: skip


def zone_consumer(context: Any) -> ZoneEngine:
    """Factory for ``HELDAR_DETECTION_CONSUMERS=heldar.zones.engine:zone_consumer``: ``context`` has ``pool``
    (an asyncpg pool) and ``settings`` (a dict of settings; ``zone_track_timeout_s`` is used when present)."""
    settings = getattr(context, "settings", None) or {}
    timeout = float(settings.get("zone_track_timeout_s", DEFAULT_TRACK_TIMEOUT_S))
    max_tracks = int(settings.get("zone_max_tracks", DEFAULT_MAX_TRACKS))
    frame_source = getattr(context, "frame_source", None)
    data_dir = settings.get("data_dir")
    return ZoneEngine(
        context.pool, track_timeout_s=timeout, max_tracks=max_tracks,
        hooks=[zone_trigger_hook(_event_mode_trigger(context.pool))], frame_source=frame_source,
        evidence_dir=evidence_root(data_dir) if data_dir and frame_source is not None else None,
    )  # fmt: skip


def _event_mode_trigger(pool: Any) -> Any:
    """Zone events open an event window on cameras in event mode; other cameras ignore them."""
    from heldar.errors import BadRequest
    from heldar.store import event_recording

    async def trigger(camera_id: str, at: Any, reason: str) -> None:
        try:
            await event_recording.trigger(pool, camera_id, at, reason)
        except BadRequest:
            pass  # continuous camera: it is recording anyway

    return trigger
