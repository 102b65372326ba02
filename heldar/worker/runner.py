"""A worker outside the cluster: lease tasks, pull frames (with tickets), analyse, post detections.

It speaks only the HTTP contract: ``POST /api/v1/ai/leases`` every ``lease_every_s`` (TTL
``max(60, 3 * lease_every_s)``), ``GET <frame_url>`` at each task's fps (skipping a 404, an unchanged
``x-frame-captured-at`` and frames older than ``max(2 s, 3 periods)``), the task's analyzer by name
(:mod:`heldar.perception.analyzers`), and ``POST /api/v1/ai/events`` with the frame's ticket. A 409, or a
401 about the ticket or lease, drops the batch and re-leases. Connection errors and 5xx are retried with
backoff; on stop the lease is released.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from heldar.perception.analyzers import Analyzer, create_analyzer

logger = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    url: str
    api_key: str | None = None
    worker_id: str = f"{socket.gethostname()}:{os.getpid()}"
    lease_every_s: float = 10.0
    timeout_s: float = 10.0
    task_types: list[str] | None = None


@dataclass
class _Runner:
    task: dict[str, Any]
    analyzer: Analyzer
    next_due: float = 0.0
    last_captured: str | None = None


class Worker:
    def __init__(self, options: WorkerOptions, client: httpx.Client | None = None) -> None:
        self.options = options
        headers = {"X-API-Key": options.api_key} if options.api_key else {}
        self.client = client or httpx.Client(base_url=options.url.rstrip("/"), timeout=options.timeout_s)
        self.headers = headers
        self.lease_id: str | None = None
        self.runners: dict[str, _Runner] = {}
        self.stop_event = threading.Event()
        self.posted = 0
        self.detections = 0
        self.frames = 0
        self.dropped_batches = 0
        self._lease_due = 0.0

    # --- http --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, 6):
            try:
                response = self.client.request(method, path, headers=self.headers, **kwargs)
                if response.status_code < 500:
                    return response
            except httpx.TransportError as exc:
                logger.info("worker: %s %s failed (%s)", method, path, exc.__class__.__name__)
                response = None
            if attempt == 5 or self.stop_event.is_set():
                break
            delay = min(15.0, 0.5 * 2 ** (attempt - 1))
            self.stop_event.wait(delay * (1 + random.random() * 0.25))
        if response is None:
            raise httpx.TransportError(f"{method} {path}: no answer")
        return response

    # --- leases ------------------------------------------------------------------------------
    def lease(self) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "worker_id": self.options.worker_id,
            "ttl_secs": max(60, 3 * self.options.lease_every_s),
        }
        if self.options.task_types:
            body["task_types"] = self.options.task_types
        r = self._request("POST", "/api/v1/ai/leases", json=body)
        r.raise_for_status()
        data = r.json()
        self.lease_id = data["lease_id"]
        tasks = data["tasks"]
        wanted = {t["id"]: t for t in tasks}
        for task_id in [t for t in self.runners if t not in wanted]:
            del self.runners[task_id]
        for task_id, task in wanted.items():
            current = self.runners.get(task_id)
            signature = (task["task_type"], task["fps"], task["width"], task["frame_url"], repr(task["config"]))
            if current is None or current.task.get("_sig") != signature:
                task["_sig"] = signature
                self.runners[task_id] = _Runner(task, create_analyzer(task["task_type"], task["config"]))
        self._lease_due = time.monotonic() + self.options.lease_every_s
        return tasks

    def release(self) -> None:
        if self.lease_id:
            try:
                self._request("DELETE", f"/api/v1/ai/leases/{self.lease_id}")
            except Exception as exc:
                logger.info("worker: release failed (%s)", exc.__class__.__name__)
            self.lease_id = None

    # --- one task cycle ----------------------------------------------------------------------
    def run_task(self, runner: _Runner) -> None:
        import cv2
        import numpy as np

        task = runner.task
        period = 1.0 / max(float(task["fps"]), 0.1)
        r = self._request("GET", task["frame_url"])
        if r.status_code == 404:
            return
        r.raise_for_status()
        captured = r.headers.get("x-frame-captured-at")
        age_ms = float(r.headers.get("x-frame-age-ms", "0"))
        if captured == runner.last_captured or age_ms > max(2000.0, 3000 * period):
            return
        runner.last_captured = captured
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return
        captured_at = datetime.fromisoformat(captured.replace("Z", "+00:00")) if captured else datetime.now(UTC)
        self.frames += 1
        detections = runner.analyzer.analyze(image, captured_at)
        if not detections:
            return
        body: dict[str, Any] = {
            "camera_id": task["camera_id"], "task_type": task["task_type"], "worker_id": self.options.worker_id,
            "timestamp": captured_at.isoformat(),
            "detections": [{"label": d.label, "confidence": d.confidence, "bbox": list(d.bbox) if d.bbox else None,
                            "track_id": d.track_id, "attributes": d.attributes} for d in detections[:1000]],
        }  # fmt: skip
        ticket = r.headers.get("x-frame-ticket")
        if ticket:
            body["frame_ticket"] = ticket
        else:
            body["frame_id"] = f"{task['id']}:{captured}"
        posted = self._request("POST", "/api/v1/ai/events", json=body)
        if posted.status_code == 409 or (posted.status_code == 401 and "ticket" in posted.text.lower()):
            self.dropped_batches += 1
            self._lease_due = 0.0  # re-lease now
            return
        posted.raise_for_status()
        self.posted += 1
        self.detections += int(posted.json().get("detections_ingested", 0))

    def run(self, max_seconds: float | None = None) -> None:
        """Loop until ``stop()`` (or ``max_seconds``); releases the lease on the way out."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        try:
            while not self.stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
                now = time.monotonic()
                if now >= self._lease_due:
                    try:
                        self.lease()
                    except Exception as exc:
                        logger.warning("worker: lease failed (%s)", exc)
                        self._lease_due = now + self.options.lease_every_s
                for runner in list(self.runners.values()):
                    if now >= runner.next_due:
                        runner.next_due = now + 1.0 / max(float(runner.task["fps"]), 0.1)
                        try:
                            self.run_task(runner)
                        except Exception as exc:
                            logger.warning("worker: task %s failed: %s", runner.task["id"], exc)
                dues = [r.next_due for r in self.runners.values()] + [self._lease_due]
                self.stop_event.wait(max(0.005, min(dues) - time.monotonic()))
        finally:
            self.release()

    def stop(self) -> None:
        self.stop_event.set()
