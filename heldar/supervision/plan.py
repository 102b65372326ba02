"""Pure planning for the supervisor: which camera units to start, stop or restart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReconcilePlan:
    start: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    reload: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.start or self.stop or self.reload)


def plan_reconcile(desired: Mapping[str, Any], running: Mapping[str, Any]) -> ReconcilePlan:
    """Compare desired units (id → config version) with running ones (id → version they run).

    New ids start, vanished ids stop, ids whose version changed reload their configuration.
    """
    start = sorted(set(desired) - set(running))
    stop = sorted(set(running) - set(desired))
    reload = sorted(i for i in set(desired) & set(running) if desired[i] != running[i])
    return ReconcilePlan(start=start, stop=stop, reload=reload)
