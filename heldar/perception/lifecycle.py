"""Lifecycles of perception units (samplers, detectors, the ingest actor).

The state machine is the supervision tree's :class:`heldar.supervision.unit.UnitLifecycle` (pending →
starting → running → backing_off → crash_loop/failed, each transition with its cause); this module holds the
perception defaults and the one rule of its own: when a detector is hung.
"""

from __future__ import annotations

from heldar.supervision.unit import ALIVE, STARTABLE, UnitLifecycle, UnitState

# Perception units hold no footage: one bad health answer in a row more than a slow one is enough.
HEALTH_FAILURES_TO_REPLACE = 2

__all__ = ["ALIVE", "HEALTH_FAILURES_TO_REPLACE", "STARTABLE", "UnitLifecycle", "UnitState", "is_hung", "unit"]


def unit(name: str) -> UnitLifecycle:
    """The lifecycle of one perception unit, with perception's health threshold."""
    return UnitLifecycle(name, health_failures_to_restart=HEALTH_FAILURES_TO_REPLACE, healthy_after_s=60.0)


def is_hung(busy_s: float | None, timeout_s: float) -> bool:
    """A detector whose current call has been running for at least ``timeout_s`` is hung."""
    return busy_s is not None and busy_s >= timeout_s
