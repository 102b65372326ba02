"""Capabilities, the five roles, and who may do what (following the upstream kernel's matrix)."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("admin", "manager", "guard", "viewer", "integration")

ADMIN = "admin"
CAPABILITIES = (
    "admin", "registry:manage", "gate:operate", "camera:read", "events:read", "ai:tasks", "ai:frames",
    "video:live", "video:playback", "video:export", "identity:read", "system:read", "net:scan",
    "module:proxy", "ai:ingest", "ai:embedwork",
)  # fmt: skip

_READS = {"camera:read", "events:read", "ai:tasks", "ai:frames", "video:live", "video:playback",
          "video:export", "identity:read", "system:read", "net:scan", "module:proxy"}  # fmt: skip

ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    "admin": frozenset(CAPABILITIES),
    "manager": frozenset(_READS | {"registry:manage", "gate:operate"}),
    "guard": frozenset(_READS | {"gate:operate"}),
    "viewer": frozenset(_READS),
    "integration": frozenset(_READS | {"ai:ingest", "ai:embedwork"}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, an API key, or the synthetic ``system`` admin when auth is off."""

    id: str
    name: str
    role: str
    kind: str  # user | api_key | system
    capabilities: frozenset[str] = field(default_factory=frozenset)
    camera_scope: frozenset[str] | None = None  # None: every camera

    def can(self, capability: str) -> bool:
        return ADMIN in self.capabilities or capability in self.capabilities

    def sees_camera(self, camera_id: str) -> bool:
        return self.camera_scope is None or camera_id in self.camera_scope


SYSTEM = Principal(id="system", name="system", role="admin", kind="system",
                   capabilities=frozenset(CAPABILITIES))  # fmt: skip
