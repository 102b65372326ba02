"""Analyzers: a frame in, detections out. Real defaults (MOG2 motion, HOG people); more plug in by name.

An analyzer is anything with ``analyze(frame, captured_at) -> list[Detection]`` where ``frame`` is a BGR
``numpy`` image; bboxes are ``(x, y, w, h)`` normalised to 0..1 from the top-left. Analyzers keep state
per (camera, task) (a background model, a tracker), so a detector pins each camera to one instance.

* ``motion``: OpenCV MOG2 background subtraction on a small grey copy; one box per moving blob.
* ``person``: OpenCV's HOG + linear SVM people detector (INRIA-trained, upright pedestrians).
* anything else: registered with :func:`register_analyzer`, or named in ``HELDAR_AI_ANALYZERS`` as
  ``name=package.module:factory``; an unknown name gets :class:`NullAnalyzer`, which never invents
  detections.

Analyzer output passes through a tracker (``person``: :class:`~heldar.perception.tracker.MotionTracker`,
which predicts motion from the frame times; ``motion``: the IoU tracker) unless the analyzer sets its own
``track_id`` values.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from heldar.perception.detections import Detection
from heldar.perception.tracker import IouTracker, MotionTracker

logger = logging.getLogger(__name__)


class Analyzer(Protocol):
    name: str

    def analyze(self, frame: np.ndarray, captured_at: datetime) -> list[Detection]: ...


AnalyzerFactory = Callable[[dict[str, Any]], Analyzer]
_REGISTRY: dict[str, AnalyzerFactory] = {}


def register_analyzer(name: str, factory: AnalyzerFactory) -> None:
    _REGISTRY[name] = factory


def load_analyzer_specs(specs: str | None) -> list[str]:
    """Register ``name=module:factory`` entries (comma separated); returns the names registered."""
    names = []
    for raw in (specs or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, _, target = entry.partition("=")
        module_name, _, attr = target.partition(":")
        if not name or not module_name or not attr:
            raise ValueError(f"analyzer spec {entry!r} is not name=module:factory")
        factory = getattr(importlib.import_module(module_name), attr)
        register_analyzer(name.strip(), factory)
        names.append(name.strip())
    return names


def create_analyzer(task_type: str, config: dict[str, Any] | None = None) -> Analyzer:
    factory = _REGISTRY.get(task_type)
    if factory is None:
        logger.warning("no analyzer named %s; its frames produce no detections", task_type)
        return NullAnalyzer(task_type)
    return factory(dict(config or {}))


# Bounds on the built-in analyzers' options (security F18: an unbounded option is a cross-camera DoS).
CONFIG_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "motion": {"min_area": (0.0, 1.0), "var_threshold": (1.0, 1000.0), "history": (1, 10000),
               "work_width": (32, 3840), "warmup_frames": (0, 1000)},
    "person": {"work_width": (64, 3840), "min_confidence": (0.0, 1.0), "win_stride": (4, 64),
               "scale": (1.01, 2.0), "nms": (0.0, 1.0)},
    "delay": {"delay_s": (0.0, 5.0)},
}  # fmt: skip
MAX_CONFIG_BYTES = 16 * 1024


class TaskConfigError(ValueError):
    """A task config value is out of bounds; the message says which and why."""


def validate_task_config(task_type: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """Check a task's ``config`` against its analyzer's bounds (numbers within range, at most 16 KiB)."""
    import json

    out = dict(config or {})
    if len(json.dumps(out, default=str)) > MAX_CONFIG_BYTES:
        raise TaskConfigError(f"config is larger than {MAX_CONFIG_BYTES} bytes")
    for key, (low, high) in CONFIG_BOUNDS.get(task_type, {}).items():
        if key not in out:
            continue
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise TaskConfigError(f"config.{key} must be a number")
        if not low <= value <= high:
            raise TaskConfigError(f"config.{key} must lie in {low:g}..{high:g} for {task_type}")
    return out


def _bounded(task_type: str, config: dict[str, Any], key: str, default: float) -> float:
    """A config value clamped to its bounds (rows written before the bounds existed stay harmless)."""
    low, high = CONFIG_BOUNDS[task_type][key]
    try:
        value = float(config.get(key, default))
    except (TypeError, ValueError):
        value = default
    return min(high, max(low, value)) if math.isfinite(value) else default


def known_analyzers() -> list[str]:
    return sorted(_REGISTRY)


class NullAnalyzer:
    def __init__(self, name: str = "null") -> None:
        self.name = name

    def analyze(self, frame: np.ndarray, captured_at: datetime) -> list[Detection]:
        return []


def _cv2() -> Any:
    import cv2

    cv2.setNumThreads(1)  # one analyzer per core is the unit of scaling; OpenCV's pool fights Ray's
    return cv2


class MotionAnalyzer:
    """MOG2 foreground → blobs above ``min_area`` (fraction of the frame) → boxes, tracked.

    Config: ``min_area`` (0.002), ``var_threshold`` (25), ``history`` (200), ``work_width`` (320),
    ``warmup_frames`` (3: no detections while the background model forms).
    """

    name = "motion"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.cv2 = _cv2()
        self.min_area = float(config.get("min_area", 0.002))
        self.work_width = int(config.get("work_width", 320))
        self.warmup = int(config.get("warmup_frames", 3))
        self.subtractor = self.cv2.createBackgroundSubtractorMOG2(
            history=int(config.get("history", 200)),
            varThreshold=float(config.get("var_threshold", 25)),
            detectShadows=False,
        )
        self.kernel = np.ones((3, 3), np.uint8)
        self.frames = 0
        self.tracker = IouTracker()

    def analyze(self, frame: np.ndarray, captured_at: datetime) -> list[Detection]:
        cv2 = self.cv2
        h, w = frame.shape[:2]
        scale = min(1.0, self.work_width / w)
        small = cv2.resize(frame, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        mask = self.subtractor.apply(grey)
        self.frames += 1
        if self.frames <= self.warmup:
            return []
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        mask = cv2.dilate(mask, self.kernel, iterations=2)
        sh, sw = mask.shape[:2]
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        found = []
        for contour in contours:
            x, y, bw, bh = cv2.boundingRect(contour)
            if bw * bh < self.min_area * sw * sh:
                continue
            fill = float(cv2.contourArea(contour)) / max(1.0, bw * bh)
            bbox = (x / sw, y / sh, bw / sw, bh / sh)
            found.append(Detection("motion", round(min(1.0, max(0.05, fill)), 3), bbox))
        return self.tracker.update(found)


class PersonAnalyzer:
    """OpenCV HOG people detector. Config: ``work_width`` (640), ``min_confidence`` (0.3),
    ``win_stride`` (8), ``scale`` (1.1), ``nms`` (0.4). Confidence is ``1 - exp(-svm_score)``."""

    name = "person"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.cv2 = _cv2()
        self.hog = self.cv2.HOGDescriptor()
        self.hog.setSVMDetector(self.cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.work_width = int(config.get("work_width", 640))
        self.min_confidence = float(config.get("min_confidence", 0.3))
        stride = int(config.get("win_stride", 8))
        self.win_stride = (stride, stride)
        self.scale = float(config.get("scale", 1.1))
        self.nms = float(config.get("nms", 0.4))
        # motion prediction: fewer ID switches and spurious zone events than the IoU tracker (bench.tracker)
        self.tracker: IouTracker | MotionTracker = MotionTracker()

    def analyze(self, frame: np.ndarray, captured_at: datetime) -> list[Detection]:
        cv2 = self.cv2
        h, w = frame.shape[:2]
        scale = min(1.0, self.work_width / w)
        img = frame if scale == 1.0 else cv2.resize(frame, (int(w * scale), int(h * scale)))
        ih, iw = img.shape[:2]
        rects, weights = self.hog.detectMultiScale(img, winStride=self.win_stride, padding=(8, 8), scale=self.scale)
        if len(rects) == 0:
            return self._track([], captured_at)
        scores = [1.0 - math.exp(-max(0.0, float(s))) for s in np.asarray(weights).reshape(-1)]
        boxes = [[int(v) for v in r] for r in rects]
        keep = cv2.dnn.NMSBoxes(boxes, scores, self.min_confidence, self.nms)
        found = []
        for i in np.asarray(keep).reshape(-1):
            x, y, bw, bh = boxes[int(i)]
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(iw, x + bw), min(ih, y + bh)
            if x1 <= x0 or y1 <= y0:
                continue
            bbox = (x0 / iw, y0 / ih, (x1 - x0) / iw, (y1 - y0) / ih)
            found.append(Detection("person", round(scores[int(i)], 3), bbox))
        return self._track(found, captured_at)

    def _track(self, found: list[Detection], captured_at: datetime) -> list[Detection]:
        if isinstance(self.tracker, MotionTracker):
            return self.tracker.update(found, captured_at.timestamp())
        return self.tracker.update(found)


class DelayAnalyzer:
    """Sleeps ``delay_s`` per frame and finds nothing: an overloaded worker for tests and benchmarks."""

    name = "delay"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.delay_s = _bounded("delay", config or {}, "delay_s", 0.5)

    def analyze(self, frame: np.ndarray, captured_at: datetime) -> list[Detection]:
        import time

        time.sleep(self.delay_s)
        return []


register_analyzer("delay", DelayAnalyzer)
register_analyzer("motion", MotionAnalyzer)
register_analyzer("person", PersonAnalyzer)
