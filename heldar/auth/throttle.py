"""Login throttling: sliding-window limits per source and in total, a per-(account, source) failure count,
and a bound on concurrent password hashes.

All state is in this process's memory (each API process throttles on its own; the account lockout in the
database is what holds across processes). A "source" is the client address the server saw: behind a reverse
proxy that is the proxy unless uvicorn is told to trust its ``X-Forwarded-For`` (``--forwarded-allow-ips``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from heldar.errors import TooManyRequests

MAX_TRACKED = 10_000  # sources / (account, source) pairs remembered; the oldest are forgotten past it


@dataclass(frozen=True)
class ThrottlePolicy:
    per_source_per_min: int = 10  # login attempts one source may make per minute; 0 = unlimited
    global_per_min: int = 120  # login attempts all sources together may make per minute; 0 = unlimited
    max_concurrent_hashes: int = 2  # password verifications running at once
    hash_wait_s: float = 5.0  # how long a login waits for a hashing slot before it is answered 429
    failure_window_s: float = 900.0  # how long a source's failures on an account are remembered


class _Window:
    """Timestamps of recent events inside ``span_s``."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: deque[float] = deque()

    def prune(self, now: float, span_s: float) -> None:
        while self.events and self.events[0] <= now - span_s:
            self.events.popleft()


class LoginThrottle:
    def __init__(self, policy: ThrottlePolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._global = _Window()
        self._sources: dict[str, _Window] = {}
        self._failures: dict[tuple[str, str], _Window] = {}
        self._hashes = asyncio.Semaphore(max(1, policy.max_concurrent_hashes))

    def _bounded(self, table: dict, key: object) -> _Window:  # type: ignore[type-arg]
        window = table.get(key)
        if window is None:
            if len(table) >= MAX_TRACKED:
                table.pop(next(iter(table)))  # oldest inserted
            window = table[key] = _Window()
        return window

    def admit(self, source: str) -> None:
        """Count one login attempt from ``source``; raise ``TooManyRequests`` when a limit is reached."""
        now = self._clock()
        limit_g, limit_s = self.policy.global_per_min, self.policy.per_source_per_min
        self._global.prune(now, 60.0)
        window = self._bounded(self._sources, source)
        window.prune(now, 60.0)
        if limit_s and len(window.events) >= limit_s:
            raise TooManyRequests("too many login attempts from this address", 60.0 - (now - window.events[0]))
        if limit_g and len(self._global.events) >= limit_g:
            raise TooManyRequests("too many login attempts; try again shortly", 60.0 - (now - self._global.events[0]))
        window.events.append(now)
        self._global.events.append(now)

    def record_failure(self, user_id: str, source: str) -> None:
        now = self._clock()
        window = self._bounded(self._failures, (user_id, source))
        window.prune(now, self.policy.failure_window_s)
        window.events.append(now)

    def failures(self, user_id: str, source: str) -> int:
        window = self._failures.get((user_id, source))
        if window is None:
            return 0
        window.prune(self._clock(), self.policy.failure_window_s)
        return len(window.events)

    def clear_failures(self, user_id: str, source: str) -> None:
        self._failures.pop((user_id, source), None)

    @asynccontextmanager
    async def hashing(self) -> AsyncIterator[None]:
        """Hold one of the bounded password-hash slots; 429 when none frees up within ``hash_wait_s``."""
        try:
            async with asyncio.timeout(self.policy.hash_wait_s):
                await self._hashes.acquire()
        except TimeoutError:
            raise TooManyRequests("login service busy; try again shortly", 1.0) from None
        try:
            yield
        finally:
            self._hashes.release()
