"""At most one stream probe per camera and a few in total (security F5): each probe is an ffmpeg process and
an RTSP session on a camera that may allow only a handful, so probes must never crowd out the recorder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from heldar.errors import TooManyRequests


class ProbeLimiter:
    """Not thread-safe: used from one event loop (the API process)."""

    def __init__(self, max_total: int) -> None:
        self.max_total = max(1, max_total)
        self._running: set[str] = set()

    @property
    def running(self) -> int:
        return len(self._running)

    @contextmanager
    def slot(self, camera_id: str) -> Iterator[None]:
        """Hold the probe slot of ``camera_id``; 429 when that camera is being probed or all slots are busy."""
        if camera_id in self._running:
            raise TooManyRequests(f"a stream test of camera {camera_id!r} is already running", 5.0)
        if len(self._running) >= self.max_total:
            raise TooManyRequests("too many stream tests running; try again shortly", 5.0)
        self._running.add(camera_id)
        try:
            yield
        finally:
            self._running.discard(camera_id)
