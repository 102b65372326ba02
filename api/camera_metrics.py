"""Per-camera recorder metrics for ``/metrics``, read from the database at scrape time.

The numbers are cluster truth (what the camera actors wrote to ``camera_status`` and ``segments``),
so every API process answers the same. Each scrape builds its families afresh: a camera deleted
since the last scrape simply disappears, and no series is ever left stale in a process registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.deps import AppState
from heldar.recording.records import CAMERA_STATES
from heldar.store import cameras as camera_store
from heldar.store import gaps as gap_store
from heldar.store import recording_reads

logger = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0

MetricSource = Callable[[], Awaitable[bytes]]


class _Snapshot(Collector):
    """A collector over rows already read (prometheus_client collects synchronously)."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        segments: int,
        total_bytes: int,
        anr: dict[str, Any] | None = None,
        *,
        segment_lengths: dict[str, int] | None = None,
        supervisor_up: bool | None = None,
    ) -> None:
        self.rows = rows
        self.segments = segments
        self.total_bytes = total_bytes
        self.anr = anr or {"gaps": {}, "attempts": {}, "seconds_recovered": 0.0}
        self.segment_lengths = segment_lengths or {}
        self.supervisor_up = supervisor_up

    def collect(self) -> Iterator[Metric]:
        recording = GaugeMetricFamily("heldar_cameras_recording", "Cameras whose recorder is recording")
        recording.add_metric([], sum(1 for r in self.rows if r["state"] == "recording"))
        segments = GaugeMetricFamily("heldar_segments", "Indexed segments")
        segments.add_metric([], self.segments)
        size = GaugeMetricFamily("heldar_recordings_bytes", "Sum of indexed segment sizes in bytes")
        size.add_metric([], self.total_bytes)

        up = GaugeMetricFamily("heldar_camera_up", "1 when the camera is recording, else 0", labels=["camera"])
        states = GaugeMetricFamily(
            "heldar_camera_state", "The camera's shown state: 1 for the state it is in, 0 for the others",
            labels=["camera", "state"],
        )  # fmt: skip
        reconnects = CounterMetricFamily(
            "heldar_camera_reconnects", "Recorder reconnects to the camera", labels=["camera"]
        )
        written = CounterMetricFamily(
            "heldar_camera_segments_written", "Live segments written by the recorder", labels=["camera"]
        )
        rate = GaugeMetricFamily(
            "heldar_camera_stream_bytes_per_second", "Last observed stream rate (bytes per second)", labels=["camera"]
        )
        age = GaugeMetricFamily(
            "heldar_camera_last_segment_age_seconds", "Seconds since the newest segment ended", labels=["camera"]
        )
        last = GaugeMetricFamily(
            "heldar_camera_last_segment_timestamp_seconds", "When the newest segment ended (Unix time)",
            labels=["camera"],
        )  # fmt: skip
        restarts = CounterMetricFamily(
            "heldar_camera_restarts",
            "Supervisor restarts of the camera's recorder, by cause",
            labels=["camera", "cause"],
        )
        for row in self.rows:
            camera = row["camera_id"]
            up.add_metric([camera], 1.0 if row["state"] == "recording" else 0.0)
            shown = row["state"] if row["state"] in CAMERA_STATES else "unknown"
            for name in CAMERA_STATES:
                states.add_metric([camera, name], 1.0 if name == shown else 0.0)
            reconnects.add_metric([camera], float(row["reconnect_count"] or 0))
            written.add_metric([camera], float(row["segments_written"] or 0))
            if row["bitrate_kbps"] is not None:
                rate.add_metric([camera], float(row["bitrate_kbps"]) * 1000 / 8)
            if row["last_segment_age_s"] is not None:
                age.add_metric([camera], max(0.0, float(row["last_segment_age_s"])))
            if row.get("last_segment_at") is not None:
                last.add_metric([camera], row["last_segment_at"].timestamp())
            by_cause = row["restarts_by_cause"] or {}
            if isinstance(by_cause, dict):
                for cause, count in sorted(by_cause.items()):
                    try:
                        restarts.add_metric([camera, str(cause)], float(count))
                    except (TypeError, ValueError):
                        logger.debug("camera %s: unreadable restart count for %s", camera, cause)
        gaps = GaugeMetricFamily("heldar_recording_gaps", "Persisted recording gaps by fill state", labels=["state"])
        for state in ("pending", "filled", "failed"):
            gaps.add_metric([state], float(self.anr["gaps"].get(state, 0)))
        attempts = CounterMetricFamily("heldar_anr_fill_attempts", "ANR fill attempts by outcome", labels=["outcome"])
        for outcome in ("filled", "failed"):
            attempts.add_metric([outcome], float(self.anr["attempts"].get(outcome, 0)))
        recovered = CounterMetricFamily("heldar_anr_recovered_seconds", "Seconds of footage recovered by ANR")
        recovered.add_metric([], float(self.anr["seconds_recovered"]))
        by_cause = GaugeMetricFamily(
            "heldar_recording_gaps_by_cause", "Persisted recording gaps by the cause code of their outage",
            labels=["cause"],
        )  # fmt: skip
        for cause, count in sorted(self.anr.get("gaps_by_cause", {}).items()):
            by_cause.add_metric([cause], float(count))
        lengths = GaugeMetricFamily(
            "heldar_camera_segment_seconds", "Each camera's configured segment length in seconds", labels=["camera"]
        )
        for camera, seconds in sorted(self.segment_lengths.items()):
            lengths.add_metric([camera], float(seconds))
        supervisor = GaugeMetricFamily(
            "heldar_supervisor_up", "1 when the supervisor answers and its loops run (a standby counts), else 0"
        )
        if self.supervisor_up is not None:
            supervisor.add_metric([], 1.0 if self.supervisor_up else 0.0)
        yield from (
            recording,
            segments,
            size,
            up,
            states,
            reconnects,
            written,
            rate,
            age,
            last,
            restarts,
            gaps,
            attempts,
            recovered,
            by_cause,
            lengths,
            supervisor,
        )


async def collect_camera_metrics(state: AppState) -> bytes:
    """Prometheus text of the per-camera series; empty when the database does not answer in time."""
    if state.pool is None:
        return b""
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            rows = await recording_reads.status_for_metrics(state.pool)
            segments, total_bytes = await recording_reads.segment_totals(state.pool)
            anr = await gap_store.anr_stats(state.pool)
            lengths = await camera_store.segment_lengths(state.pool)
    except Exception as exc:
        logger.warning("camera metrics unavailable: %s", exc.__class__.__name__)
        return b""
    supervisor_up = None
    if state.supervisor is not None:
        supervisor_up = await state.supervisor.ping(timeout=SCRAPE_TIMEOUT_S)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(rows, segments, total_bytes, anr, segment_lengths=lengths, supervisor_up=supervisor_up))
    return generate_latest(registry)


def camera_metrics_source(state: AppState) -> MetricSource:
    """The ``metric_sources`` entry for ``create_app``."""

    async def collect() -> bytes:
        return await collect_camera_metrics(state)

    return collect
