"""The global decode budget: which (camera, profile) units sample, at what fps and width.

A pure function over the units that have enabled tasks. It follows the upstream ladder allocator:

* units are served in order: camera priority (highest first), then camera id, then profile;
* the cost of a unit is ``fps · (width / requested_width)²`` (decoding a quarter of the pixels costs a
  quarter), and the costs of all grants never exceed the budget ``B`` (``HELDAR_AI_MAX_TOTAL_FPS``);
* **tier 1**: after reserving the floor of every later unit, a unit gets ``min(requested, headroom)`` fps
  at full width, but at least the floor fps (``MIN_FPS``, or the request when that is lower);
* **tier 2**: when that does not fit, the unit gets the floor fps at the widest step of the width
  ladder (100 %, 75 %, 50 % of the request, never below ``MIN_WIDTH``) that fits after reserving the
  cheapest admission of every later unit: width steps down before a unit is dropped;
* **shed**: when not even the narrowest step fits, the unit is ``budget_exhausted`` (fps 0). A unit
  whose tier-2 grant only fits by eating the reservations of later units takes them (it outranks them),
  so a lower-priority unit is never admitted while a higher one is shed.

Better than upstream: a unit never gets more fps than it asked for (upstream lifts a 0.1 fps request to
0.5), and reservations use each later unit's own floor rather than a fixed 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MIN_FPS = 0.5
MIN_WIDTH = 320
WIDTH_LADDER = (1.0, 0.75, 0.5)
_EPS = 1e-9

GrantState = Literal["granted", "degraded", "budget_exhausted"]


@dataclass(frozen=True)
class UnitRequest:
    """One decoder: the max fps and max width requested by the enabled tasks of (camera, profile)."""

    camera_id: str
    profile: str
    fps: float
    width: int
    priority: int = 100

    @property
    def key(self) -> tuple[str, str]:
        return (self.camera_id, self.profile)


@dataclass(frozen=True)
class Grant:
    camera_id: str
    profile: str
    fps: float  # 0 when shed
    width: int
    state: GrantState
    requested_fps: float
    requested_width: int

    @property
    def cost(self) -> float:
        return 0.0 if self.fps <= 0 else self.fps * (self.width / self.requested_width) ** 2

    @property
    def key(self) -> tuple[str, str]:
        return (self.camera_id, self.profile)


def width_ladder(requested: int, min_width: int = MIN_WIDTH) -> list[int]:
    """Widths to try, widest first: 100/75/50 % of the request, even, never below ``min_width``
    (a request already below it is only ever granted as asked)."""
    steps: list[int] = []
    for ratio in WIDTH_LADDER:
        width = int(round(requested * ratio / 2) * 2) if ratio < 1 else requested
        if (width >= min_width or ratio == 1.0) and width not in steps:
            steps.append(width)
    return steps


def _floor_fps(unit: UnitRequest) -> float:
    return min(MIN_FPS, unit.fps)


def _cheapest(unit: UnitRequest) -> float:
    narrowest = width_ladder(unit.width)[-1]
    return _floor_fps(unit) * (narrowest / unit.width) ** 2


def order_units(units: Sequence[UnitRequest]) -> list[UnitRequest]:
    return sorted(units, key=lambda u: (-u.priority, u.camera_id, u.profile))


def allocate(units: Sequence[UnitRequest], budget: float) -> list[Grant]:
    """Grants in service order (priority, camera, profile); see the module docstring."""
    ordered = order_units(units)
    n = len(ordered)
    # suffix sums: what every later unit needs at its tier-1 floor and at its cheapest admission
    floor_after = [0.0] * (n + 1)
    cheap_after = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        floor_after[i] = floor_after[i + 1] + _floor_fps(ordered[i])
        cheap_after[i] = cheap_after[i + 1] + _cheapest(ordered[i])
    remaining = max(0.0, float(budget))
    grants: list[Grant] = []
    for i, unit in enumerate(ordered):
        floor = _floor_fps(unit)
        headroom = remaining - floor_after[i + 1]
        if unit.fps > 0 and headroom + _EPS >= floor:
            fps = max(floor, min(unit.fps, headroom))
            grants.append(Grant(unit.camera_id, unit.profile, fps, unit.width, "granted", unit.fps, unit.width))
            remaining -= fps
            continue
        granted = None
        # reserve the cheapest admission of every later unit; if even that leaves no room, this unit
        # still outranks them, so it may take the room they would have had
        for spare in (remaining - cheap_after[i + 1], remaining):
            for width in width_ladder(unit.width) if unit.fps > 0 else []:
                cost = floor * (width / unit.width) ** 2
                if cost <= spare + _EPS:
                    granted = Grant(unit.camera_id, unit.profile, floor, width, "degraded", unit.fps, unit.width)
                    remaining -= cost
                    break
            if granted is not None:
                break
        if granted is None:
            granted = Grant(unit.camera_id, unit.profile, 0.0, unit.width, "budget_exhausted", unit.fps, unit.width)
        grants.append(granted)
    return grants


def total_cost(grants: Sequence[Grant]) -> float:
    return sum(g.cost for g in grants)
