"""The lifecycle of one supervised unit (a camera recorder, a sampler, ...), as a plain state machine.

::

    pending ──begin_start──► starting ──started──► running
                               │  ▲                   │
                  start failed │  │ begin_start       │ failed (died, hung, exited)
                               ▼  │                   ▼
                           backing_off ◄──────────────┘      (crash_loop instead while restarts come too often)
    any ──stop──► stopping ──stopped──► stopped               failed: given up (e.g. the camera row is gone)

Every transition carries a short machine cause (``died``, ``hung``, ``start_failed`` …) and a message for a
person, is kept in a bounded history and handed to an optional listener. The supervisor only *executes*
transitions (kill, wait, start); the rules live here:

* **Generations.** Each start gets a generation number. A report about an older generation (a watch task
  or a health check that finished after the unit was already restarted) is ignored, so one death is never
  counted twice and two restarts never race.
* **Health thresholds.** A unit is restarted for being unresponsive only after ``health_failures_to_restart``
  consecutive failed checks, not one slow answer: for a recorder every restart is a hole in the footage.
* **Backoff.** Restarts are delayed by a :class:`~heldar.recorder_policy.RestartLimiter` (1, 2, 4 … 60 s);
  several failures within its window show as ``crash_loop``; a unit that ran healthy for ``healthy_after_s``
  starts its streak afresh.

Clocks are injected (``time.monotonic`` seconds), so tests drive it without Ray or sleeps.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from heldar.recorder_policy import RestartLimiter

logger = logging.getLogger(__name__)


class UnitState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    CRASH_LOOP = "crash_loop"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


# States from which a (re)start may begin.
STARTABLE = frozenset({UnitState.PENDING, UnitState.BACKING_OFF, UnitState.CRASH_LOOP, UnitState.FAILED})
# States in which a unit is meant to be alive (a failure report is meaningful).
ALIVE = frozenset({UnitState.STARTING, UnitState.RUNNING})


class TransitionError(RuntimeError):
    """A transition that the lifecycle does not allow from the current state."""


@dataclass(frozen=True)
class Transition:
    unit_id: str
    source: UnitState
    target: UnitState
    cause: str
    message: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.source.value,
            "to": self.target.value,
            "cause": self.cause,
            "message": self.message,
            "at": self.at.isoformat(),
        }


class UnitLifecycle:
    def __init__(
        self,
        unit_id: str,
        *,
        limiter: RestartLimiter | None = None,
        health_failures_to_restart: int = 3,
        healthy_after_s: float = 60.0,
        history: int = 32,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        if health_failures_to_restart < 1:
            raise ValueError("health_failures_to_restart must be at least 1")
        self.unit_id = unit_id
        self.limiter = limiter or RestartLimiter()
        self.health_failures_to_restart = health_failures_to_restart
        self.healthy_after_s = healthy_after_s
        self._clock = clock
        self._on_transition = on_transition
        self.state = UnitState.PENDING
        self.cause = "created"
        self.message = "waiting to start"
        self.generation = 0
        self.restart_at: float | None = None  # monotonic time the pending restart is due (backing_off/crash_loop)
        self.running_since: float | None = None
        self.health_failures = 0
        self.history: deque[Transition] = deque(maxlen=history)

    # --- transitions ------------------------------------------------------------------------------
    def _move(self, target: UnitState, cause: str, message: str) -> Transition:
        transition = Transition(self.unit_id, self.state, target, cause, message)
        self.state, self.cause, self.message = target, cause, message
        self.history.append(transition)
        logger.debug("unit %s: %s → %s (%s: %s)", self.unit_id, transition.source, target, cause, message)
        if self._on_transition is not None:
            try:
                self._on_transition(transition)
            except Exception:
                logger.exception("unit %s: transition listener failed", self.unit_id)
        return transition

    def begin_start(self, cause: str = "requested", message: str = "starting") -> int:
        """pending/backing_off/crash_loop/failed → starting; returns the new generation."""
        if self.state not in STARTABLE:
            raise TransitionError(f"unit {self.unit_id}: cannot start from {self.state}")
        self.generation += 1
        self.restart_at = None
        self.health_failures = 0
        self._move(UnitState.STARTING, cause, message)
        return self.generation

    def started(self, generation: int, message: str = "running") -> bool:
        """starting → running for the current generation; False (and no change) for a stale one."""
        if generation != self.generation or self.state is not UnitState.STARTING:
            return False
        self.running_since = self._clock()
        self._move(UnitState.RUNNING, "started", message)
        return True

    def failed(self, cause: str, message: str, generation: int | None = None) -> float | None:
        """The unit died, hung or did not start: back off (or crash_loop). Returns the delay in seconds.

        ``None`` when the report is stale (another generation) or the unit is not meant to be alive
        (already backing off, stopping, stopped), so a death is counted once.
        """
        if generation is not None and generation != self.generation:
            return None
        if self.state not in ALIVE:
            return None
        now = self._clock()
        delay = self.limiter.record_failure(now, cause)
        self.restart_at = now + delay
        self.running_since = None
        self.health_failures = 0
        if self.limiter.crash_loop(now):
            recent = self.limiter.failures_in_window(now)
            self._move(UnitState.CRASH_LOOP, cause, f"crash loop: {message} ({recent} restarts recently)")
        else:
            detail = f"{message}; restart #{self.limiter.restarts_total} in {delay:.1f}s"
            self._move(UnitState.BACKING_OFF, cause, detail)
        return delay

    def give_up(self, cause: str, message: str) -> None:
        """Stop trying until something changes (a reconcile may start it again)."""
        self.restart_at = None
        self.running_since = None
        self._move(UnitState.FAILED, cause, message)

    def stop(self, cause: str = "stopped", message: str = "stopping") -> None:
        if self.state in (UnitState.STOPPING, UnitState.STOPPED):
            return
        self.generation += 1  # whatever is in flight for the old generation is now stale
        self.restart_at = None
        self._move(UnitState.STOPPING, cause, message)

    def stopped(self, message: str = "stopped") -> None:
        if self.state is not UnitState.STOPPED:
            self.running_since = None
            self._move(UnitState.STOPPED, self.cause, message)

    # --- health -----------------------------------------------------------------------------------
    def health_ok(self) -> None:
        """A passing check: clears the failure count; after ``healthy_after_s`` running, forgets the streak."""
        self.health_failures = 0
        if self.state is UnitState.RUNNING and self.running_since is not None:
            if self._clock() - self.running_since >= self.healthy_after_s and self.limiter.consecutive_failures:
                self.limiter.reset_after_healthy(self._clock())

    def health_failed(self) -> bool:
        """A failed check of a running unit; True when the threshold is reached (the caller then restarts it)."""
        if self.state is not UnitState.RUNNING:
            return False
        self.health_failures += 1
        return self.health_failures >= self.health_failures_to_restart

    # --- queries ----------------------------------------------------------------------------------
    @property
    def wants_running(self) -> bool:
        """Meant to be alive now or soon (starting, running or waiting for a restart)."""
        return self.state in (
            UnitState.PENDING,
            UnitState.STARTING,
            UnitState.RUNNING,
            UnitState.BACKING_OFF,
            UnitState.CRASH_LOOP,
        )

    def restart_due(self) -> bool:
        return (
            self.state in (UnitState.BACKING_OFF, UnitState.CRASH_LOOP)
            and self.restart_at is not None
            and self._clock() >= self.restart_at
        )

    def seconds_until_restart(self) -> float | None:
        if self.restart_at is None:
            return None
        return max(0.0, self.restart_at - self._clock())

    def snapshot(self) -> dict[str, Any]:
        return {
            "unit": self.unit_id,
            "state": self.state.value,
            "cause": self.cause,
            "message": self.message,
            "generation": self.generation,
            "restarts": self.limiter.restarts_total,
            "restart_in_s": None if self.restart_at is None else round(self.seconds_until_restart() or 0.0, 1),
            "health_failures": self.health_failures,
            "history": [t.as_dict() for t in list(self.history)[-5:]],
        }
