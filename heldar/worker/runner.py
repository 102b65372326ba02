"""A worker outside the cluster: lease tasks, pull frames (with tickets), analyse, post detections.

It speaks only the HTTP contract: ``POST /api/v1/ai/leases`` every ``lease_every_s`` (TTL
``max(60, 3 * lease_every_s)``), ``GET <frame_url>`` at each task's fps (skipping a 404, an unchanged
``x-frame-captured-at`` and frames older than ``max(2 s, 3 periods)``), the task's analyzer by name
(:mod:`heldar.perception.analyzers`), and ``POST /api/v1/ai/events`` with the frame's ticket. A 409, or a
401 about the ticket or lease, drops the batch and re-leases. Connection errors and 5xx are retried with
backoff; on stop the lease is released. A 401 or 403 about the worker's own key is not retried: it raises
``WorkerAuthError`` (the key is wrong, revoked or lacks the capability; retrying cannot help). Every
``summary_every_s`` (a minute) it logs one summary line: tasks, frames, batches, detections, drops, errors.
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

from heldar.cli import OperatorError
from heldar.perception.analyzers import Analyzer, create_analyzer

logger = logging.getLogger(__name__)


class WorkerAuthError(OperatorError):
    """The API refused the worker's own credential (401) or its capability (403): stop, do not retry."""


def auth_error(response: httpx.Response, url: str) -> WorkerAuthError:
    if response.status_code == 403:
        return WorkerAuthError(
            f"the API at {url} refused this worker (403 forbidden): its key lacks the capability; "
            "mint an integration key (role integration) and set HELDAR_API_KEY"
        )
    return WorkerAuthError(
        f"the API at {url} refused the worker's key (401 unauthorized): it is wrong, expired or revoked; "
        "set HELDAR_API_KEY to a valid integration key"
    )


@dataclass
class WorkerOptions:
    url: str
    api_key: str | None = None
    worker_id: str = f"{socket.gethostname()}:{os.getpid()}"
    lease_every_s: float = 10.0
    timeout_s: float = 10.0
    task_types: list[str] | None = None
    summary_every_s: float = 60.0


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
        self.errors = 0
        self._lease_due = 0.0
        self._summary_due = time.monotonic() + options.summary_every_s
        self._last_summary: dict[str, int] = self._counters()

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

    def _check_auth(self, response: httpx.Response) -> None:
        """A 401/403 about the worker's key (not a frame ticket or a lease) ends the worker."""
        if response.status_code in (401, 403) and "ticket" not in response.text.lower():
            raise auth_error(response, self.options.url)

    # --- the summary line --------------------------------------------------------------------
    def _counters(self) -> dict[str, int]:
        return {"frames": self.frames, "posted": self.posted, "detections": self.detections,
                "dropped": self.dropped_batches, "errors": self.errors}  # fmt: skip

    def summary(self) -> str:
        """What happened since the last summary, one line."""
        now = self._counters()
        delta = {k: now[k] - self._last_summary.get(k, 0) for k in now}
        self._last_summary = now
        return (
            f"worker {self.options.worker_id}: {len(self.runners)} task(s) leased; last "
            f"{self.options.summary_every_s:.0f} s: {delta['frames']} frames, {delta['posted']} batches posted, "
            f"{delta['detections']} detections, {delta['dropped']} batches dropped, {delta['errors']} errors"
        )

    def maybe_log_summary(self, now: float) -> None:
        if now >= self._summary_due:
            self._summary_due = now + self.options.summary_every_s
            logger.info("%s", self.summary())

    # --- leases ------------------------------------------------------------------------------
    def lease(self) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "worker_id": self.options.worker_id,
            "ttl_secs": max(60, 3 * self.options.lease_every_s),
        }
        if self.options.task_types:
            body["task_types"] = self.options.task_types
        r = self._request("POST", "/api/v1/ai/leases", json=body)
        self._check_auth(r)
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
        self._check_auth(r)
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
        self._check_auth(posted)
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
                    except WorkerAuthError:
                        raise
                    except Exception as exc:
                        self.errors += 1
                        logger.warning("worker: lease failed (%s)", exc)
                        self._lease_due = now + self.options.lease_every_s
                for runner in list(self.runners.values()):
                    if now >= runner.next_due:
                        runner.next_due = now + 1.0 / max(float(runner.task["fps"]), 0.1)
                        try:
                            self.run_task(runner)
                        except WorkerAuthError:
                            raise
                        except Exception as exc:
                            self.errors += 1
                            logger.warning("worker: task %s failed: %s", runner.task["id"], exc)
                self.maybe_log_summary(time.monotonic())
                dues = [r.next_due for r in self.runners.values()] + [self._lease_due, self._summary_due]
                self.stop_event.wait(max(0.005, min(dues) - time.monotonic()))
        finally:
            self.release()

    def stop(self) -> None:
        self.stop_event.set()
