"""Perception planning: enabled tasks and cameras in, the samplers that should run (and their grants) out.

Pure functions; ``actors/sampler.py``'s ``PerceptionFleet`` only carries the plan out with Ray, and the API
answers ``/ai/samplers`` from the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from heldar.perception.budget import UnitRequest, allocate
from heldar.store.perception import SamplerUnit

Key = tuple[str, str]  # (camera id, stream profile)


class _Camera(Protocol):
    def stream_url(self, profile: str) -> str | None: ...

    def record_url(self) -> str | None: ...


@dataclass(frozen=True)
class SamplerPlan:
    desired: dict[Key, dict[str, Any]] = field(default_factory=dict)  # key → the unit a sampler is built from
    grants: dict[Key, dict[str, Any]] = field(default_factory=dict)  # key → the budget's grant (every unit)


def unit_signature(unit: Mapping[str, Any]) -> str:
    """What a sampler's decoder depends on: a change means reconfigure."""
    return repr((unit["url"], round(unit["fps"], 4), unit["width"], tuple(map(tuple, unit["tasks"]))))


def plan_samplers(units: Sequence[SamplerUnit], cameras: Mapping[str, _Camera], max_total_fps: float) -> SamplerPlan:
    requests = [UnitRequest(u.camera_id, u.profile, u.fps, u.width, u.priority) for u in units]
    grants = {g.key: g for g in allocate(requests, max_total_fps)}
    plan = SamplerPlan()
    for unit in units:
        grant, camera = grants[unit.key], cameras.get(unit.camera_id)
        url = camera.stream_url(unit.profile) or camera.record_url() if camera is not None else None
        plan.grants[unit.key] = {"camera_id": unit.camera_id, "stream_profile": unit.profile, "fps": grant.fps,
                                 "width": grant.width, "state": grant.state}  # fmt: skip
        if grant.fps <= 0 or not url:
            continue
        plan.desired[unit.key] = {"camera_id": unit.camera_id, "profile": unit.profile, "url": url,
                                  "fps": grant.fps, "width": grant.width,
                                  "tasks": [list(t) for t in unit.tasks]}  # fmt: skip
    return plan


def sampler_health_state(stats: Mapping[str, Any]) -> str | None:
    """``sampling`` / ``offline`` / other, as ``sampler_offline`` events count it: between reconnect attempts a
    reader flips between offline and connecting, so either counts as down once it failed at least once."""
    raw = stats.get("state")
    if raw == "sampling":
        return "sampling"
    if raw == "offline" or stats.get("reconnects"):
        return "offline"
    return raw if isinstance(raw, str) else None


@dataclass(frozen=True)
class SettingsStamp:
    """A settings dict with a digest, pushed to long-lived actors on every start so none keeps old settings."""

    values: dict[str, Any]
    digest: str

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> SettingsStamp:
        import hashlib
        import json

        blob = json.dumps(dict(values), sort_keys=True, default=str)
        return cls(dict(values), hashlib.sha256(blob.encode()).hexdigest()[:16])
