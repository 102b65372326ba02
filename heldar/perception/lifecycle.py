"""The lifecycle of a perception unit (a sampler, a detector or the ingest actor), pure and Ray-free.

States: ``pending`` → ``starting`` → ``running``; a failure moves a unit to ``backing_off`` (with the delay
before the next start), or to ``crash_loop`` when it failed ``crash_loop_after`` times within
``crash_loop_window_s``; ``failed`` is a unit that cannot be started at all (bad configuration) until its
input changes. Every transition carries its cause, so status and logs can say why a unit is where it is.

:class:`HealthCheck` turns a series of health answers (``ping``) into a verdict: ``unhealthy_after``
consecutive bad answers (no answer, loops not running, a hung call) make the unit unhealthy; one good
answer resets it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class UnitState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    FAILED = "failed"
    CRASH_LOOP = "crash_loop"


@dataclass(frozen=True)
class Transition:
    state: UnitState
    cause: str
    at: float  # monotonic seconds


_ALLOWED: dict[UnitState, frozenset[UnitState]] = {
    UnitState.PENDING: frozenset({UnitState.STARTING, UnitState.FAILED}),
    UnitState.STARTING: frozenset({UnitState.RUNNING, UnitState.BACKING_OFF, UnitState.CRASH_LOOP, UnitState.FAILED}),
    UnitState.RUNNING: frozenset({UnitState.STARTING, UnitState.BACKING_OFF, UnitState.CRASH_LOOP, UnitState.FAILED}),
    UnitState.BACKING_OFF: frozenset({UnitState.STARTING, UnitState.FAILED}),
    UnitState.CRASH_LOOP: frozenset({UnitState.STARTING, UnitState.FAILED}),
    UnitState.FAILED: frozenset({UnitState.STARTING}),
}


class IllegalTransition(ValueError):
    pass


@dataclass
class UnitLifecycle:
    """One unit's state machine. ``now`` is always passed in (monotonic seconds), so tests need no clock."""

    name: str
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    crash_loop_after: int = 5
    crash_loop_window_s: float = 300.0
    crash_loop_delay_s: float = 60.0
    state: UnitState = UnitState.PENDING
    cause: str = "created"
    since: float = 0.0
    retry_at: float | None = None
    restarts: int = 0
    history: deque[Transition] = field(default_factory=lambda: deque(maxlen=32))
    _failures: deque[float] = field(default_factory=deque)
    _consecutive: int = 0

    def _move(self, state: UnitState, cause: str, now: float) -> None:
        if state not in _ALLOWED[self.state]:
            raise IllegalTransition(f"{self.name}: {self.state} → {state} ({cause})")
        self.state, self.cause, self.since = state, cause, now
        self.history.append(Transition(state, cause, now))

    def starting(self, cause: str, now: float) -> None:
        if self.state in (UnitState.RUNNING, UnitState.BACKING_OFF, UnitState.CRASH_LOOP):
            self.restarts += 1
        self.retry_at = None
        self._move(UnitState.STARTING, cause, now)

    def running(self, cause: str, now: float) -> None:
        """Started (or found running and healthy): the consecutive-failure count starts over."""
        if self.state is UnitState.RUNNING:
            return
        if self.state is not UnitState.STARTING:
            self.starting("adopted", now)
        self._consecutive = 0
        self._move(UnitState.RUNNING, cause, now)

    def failure(self, cause: str, now: float) -> float:
        """A start failed or a running unit died or hung; returns the delay before the next start."""
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.crash_loop_window_s:
            self._failures.popleft()
        self._consecutive += 1
        if len(self._failures) >= self.crash_loop_after:
            delay = self.crash_loop_delay_s
            self._move(UnitState.CRASH_LOOP, cause, now)
        else:
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (self._consecutive - 1))
            self._move(UnitState.BACKING_OFF, cause, now)
        self.retry_at = now + delay
        return delay

    def failed(self, cause: str, now: float) -> None:
        """Cannot be started as configured: stays here until ``starting`` is called for a changed input."""
        self.retry_at = None
        self._move(UnitState.FAILED, cause, now)

    def due(self, now: float) -> bool:
        """Whether a backing-off (or crash-looping) unit may be started again."""
        return self.state in (UnitState.BACKING_OFF, UnitState.CRASH_LOOP) and (
            self.retry_at is None or now >= self.retry_at
        )

    def view(self) -> dict[str, object]:
        return {"state": str(self.state), "cause": self.cause, "restarts": self.restarts,
                "retry_at": self.retry_at}  # fmt: skip


@dataclass
class HealthCheck:
    """Consecutive bad health answers → unhealthy; a good one resets."""

    unhealthy_after: int = 2
    bad: int = 0
    last_reason: str | None = None

    def observe(self, ok: bool, reason: str | None = None) -> bool:
        """Record one answer; True when the unit is now to be treated as unhealthy (replace it)."""
        if ok:
            self.bad, self.last_reason = 0, None
            return False
        self.bad += 1
        self.last_reason = reason
        return self.bad >= self.unhealthy_after

    def reset(self) -> None:
        self.bad, self.last_reason = 0, None


def is_hung(busy_s: float | None, timeout_s: float) -> bool:
    """A detector whose current call has been running for at least ``timeout_s`` is hung."""
    return busy_s is not None and busy_s >= timeout_s
