"""Counters and a latency histogram kept by perception actors, rendered by the API at scrape time."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Cumulative-bucket histogram plus a bounded reservoir of recent samples for percentiles."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS, keep: int = 20000) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0
        self.keep = keep
        self.recent: list[float] = []

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.n += 1
        self.recent.append(seconds)
        if len(self.recent) > self.keep:
            del self.recent[: len(self.recent) - self.keep]

    def percentile(self, q: float) -> float | None:
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def snapshot(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "counts": list(self.counts), "sum": self.total, "count": self.n,
                "p50": self.percentile(0.5), "p99": self.percentile(0.99)}  # fmt: skip


def _histogram(name: str, doc: str, labels: list[str], series: list[tuple[list[str], dict[str, Any]]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, snap in series:
        cumulative, acc = [], 0
        for bound, count in zip([*snap["buckets"], float("inf")], snap["counts"], strict=True):
            acc += count
            cumulative.append((str(bound) if bound != float("inf") else "+Inf", float(acc)))
        family.add_metric(values, cumulative, sum_value=float(snap["sum"]))
    return family


class PerceptionCollector(Collector):
    """Families from the actors' ``stats()`` answers (samplers, detectors, ingest) and DB counts."""

    def __init__(self, samplers: list[dict[str, Any]], detectors: list[dict[str, Any]],
                 ingest: dict[str, Any] | None, db: dict[str, int] | None) -> None:  # fmt: skip
        self.samplers, self.detectors, self.ingest, self.db = samplers, detectors, ingest, db or {}

    def collect(self) -> Iterator[Metric]:
        granted = GaugeMetricFamily("heldar_sampler_fps_granted", "Budgeted sampling fps", labels=["camera", "profile"])
        actual = GaugeMetricFamily("heldar_sampler_fps_actual", "Measured sampling fps", labels=["camera", "profile"])
        sampled = CounterMetricFamily("heldar_sampler_frames", "Frames sampled", labels=["camera", "profile"])
        dropped = CounterMetricFamily(
            "heldar_sampler_frames_dropped", "Sampled frames dropped because workers were behind",
            labels=["camera", "profile"],
        )  # fmt: skip
        inflight = GaugeMetricFamily("heldar_sampler_in_flight", "Frames at workers", labels=["camera", "profile"])
        by_cause = CounterMetricFamily(
            "heldar_sampler_frames_dropped_by_cause", "Sampled frames dropped: backlog (workers behind) or timeout "
            "(a detector call ran past HELDAR_AI_DETECT_TIMEOUT_S)", labels=["camera", "profile", "cause"],
        )  # fmt: skip
        replaced = CounterMetricFamily(
            "heldar_detector_replacements", "Hung detectors a sampler had replaced", labels=["camera", "profile"]
        )
        for s in self.samplers:
            lv = [s["camera_id"], s["profile"]]
            granted.add_metric(lv, float(s.get("fps") or 0))
            actual.add_metric(lv, float(s.get("fps_actual") or 0))
            sampled.add_metric(lv, float(s.get("frames_sampled", 0)))
            dropped.add_metric(lv, float(s.get("frames_dropped", 0)))
            inflight.add_metric(lv, float(s.get("in_flight", 0)))
            for cause, count in (s.get("frames_dropped_by_cause") or {}).items():
                by_cause.add_metric([*lv, cause], float(count))
            replaced.add_metric(lv, float(s.get("detector_replacements", 0)))
        yield from (granted, actual, sampled, dropped, inflight, by_cause, replaced)
        queue = GaugeMetricFamily("heldar_detector_queue_depth", "Frames waiting at a detector", labels=["detector"])
        frames = CounterMetricFamily("heldar_detector_frames", "Frames analysed", labels=["detector"])
        for d in self.detectors:
            queue.add_metric([d["name"]], float(d.get("queue_depth", 0)))
            frames.add_metric([d["name"]], float(d.get("frames", 0)))
        yield from (queue, frames)
        if self.detectors:
            yield _histogram("heldar_detector_latency_seconds", "Analysis time per frame", ["detector"],
                             [([d["name"]], d["latency"]) for d in self.detectors])  # fmt: skip
        ingested = CounterMetricFamily("heldar_detections_ingested", "Detections written by the ingest actor")
        ingested.add_metric([], float((self.ingest or {}).get("rows", 0)))
        yield ingested
        ingest = self.ingest or {}
        lost = CounterMetricFamily(
            "heldar_ingest_frames_dropped", "Frames the ingest actor dropped: buffer_full, db_error, camera_deleted",
            labels=["cause"],
        )  # fmt: skip
        for cause, count in (ingest.get("frames_dropped") or {}).items():
            lost.add_metric([cause], float(count))
        failures = CounterMetricFamily(
            "heldar_consumer_failures", "Consumer calls that failed (frame left for redelivery)", labels=["consumer"]
        )
        for name, count in (ingest.get("consumer_failures") or {}).items():
            failures.add_metric([name], float(count))
        redelivered = CounterMetricFamily("heldar_consumer_redeliveries", "Frames handed to a consumer by the replay")
        redelivered.add_metric([], float(ingest.get("redelivered", 0)))
        buffered = GaugeMetricFamily("heldar_ingest_buffered_frames", "Frames waiting in the ingest actor's buffer")
        buffered.add_metric([], float(ingest.get("buffered", 0)))
        yield from (lost, failures, redelivered, buffered)
        if self.ingest:
            yield _histogram("heldar_detection_latency_seconds", "Frame capture to committed detection row", [],
                             [([], self.ingest["latency"])])  # fmt: skip
        if self.db:
            tasks = GaugeMetricFamily("heldar_ai_tasks_enabled", "Enabled AI tasks")
            tasks.add_metric([], float(self.db.get("tasks", 0)))
            stored = GaugeMetricFamily("heldar_detections_stored", "Detection rows stored")
            stored.add_metric([], float(self.db.get("detections", 0)))
            unfanned = GaugeMetricFamily("heldar_outbox_unfanned", "Frames not yet finished by every consumer")
            unfanned.add_metric([], float(self.db.get("unfanned", 0)))
            yield from (tasks, stored, unfanned)


def render(samplers: list[dict[str, Any]], detectors: list[dict[str, Any]], ingest: dict[str, Any] | None,
           db: dict[str, int] | None) -> bytes:  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PerceptionCollector(samplers, detectors, ingest, db))
    return generate_latest(registry)
