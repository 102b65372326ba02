"""API-key grants: role, explicit capability list, camera scope, and the rules that bind them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from heldar.auth.capabilities import CAPABILITIES, ROLE_CAPABILITIES, ROLES
from heldar.ids import is_camera_id

# Granting any of these needs ``confirm_privileged: true``.
PRIVILEGED = frozenset({"admin", "registry:manage", "gate:operate"})
# A camera-scoped key may not hold these (they read fleet-wide data or imply everything).
NOT_SCOPABLE = frozenset({"admin", "events:read", "identity:read"})
SCOPE_KINDS = ("all", "cameras")
MAX_SCOPE_CAMERAS = 1000


class GrantError(ValueError):
    """The requested grant is invalid; the message says why."""


@dataclass(frozen=True)
class Grant:
    role: str
    capabilities: tuple[str, ...] | None  # None: the role's expansion (legacy keys)
    scope_kind: str = "all"
    scope_cameras: tuple[str, ...] = ()

    @property
    def effective(self) -> frozenset[str]:
        if self.capabilities is None:
            return ROLE_CAPABILITIES[self.role]
        return frozenset(self.capabilities)

    @property
    def camera_scope(self) -> frozenset[str] | None:
        return frozenset(self.scope_cameras) if self.scope_kind == "cameras" else None

    def as_detail(self) -> dict[str, Any]:
        """The full grant, for the audit row of a mint or rescope."""
        return {
            "role": self.role,
            "capabilities": list(self.capabilities) if self.capabilities is not None else None,
            "effective_capabilities": sorted(self.effective),
            "scope_kind": self.scope_kind,
            "scope_cameras": list(self.scope_cameras),
        }


def validate_grant(
    role: str,
    capabilities: Iterable[str] | None,
    scope_kind: str,
    scope_cameras: Iterable[str],
    *,
    confirm_privileged: bool,
    previously: frozenset[str] = frozenset(),
) -> Grant:
    """Check a requested grant (§3.4) and return it normalised; raise ``GrantError`` otherwise.

    ``previously`` holds what the key already had: keeping a privileged capability through a rescope
    needs no new confirmation, adding one does.
    """
    if role not in ROLES:
        raise GrantError(f"unknown role {role!r}")
    caps: tuple[str, ...] | None = None
    if capabilities is not None:
        requested = list(capabilities)
        if not requested:
            raise GrantError("capabilities must not be empty (omit it for the role's defaults)")
        unknown = sorted({c for c in requested if c not in CAPABILITIES})
        if unknown:
            raise GrantError(f"unknown capabilities: {', '.join(_short(c) for c in unknown[:5])}")
        caps = tuple(sorted(set(requested)))
    if scope_kind not in SCOPE_KINDS:
        raise GrantError("scope_kind must be 'all' or 'cameras'")
    cameras = list(scope_cameras)
    if scope_kind == "all":
        if cameras:
            raise GrantError("scope_cameras needs scope_kind 'cameras'")
    else:
        if not cameras:
            raise GrantError("scope_kind 'cameras' needs a non-empty scope_cameras")
        if len(cameras) > MAX_SCOPE_CAMERAS:
            raise GrantError(f"scope_cameras may list at most {MAX_SCOPE_CAMERAS} cameras")
        bad = [c for c in cameras if not isinstance(c, str) or not is_camera_id(c)]
        if bad:
            raise GrantError("scope_cameras must hold camera ids (lowercase slugs, no blanks)")
        if caps is None:
            raise GrantError("a camera-scoped key needs an explicit capabilities list")
        forbidden = sorted(set(caps) & NOT_SCOPABLE)
        if forbidden:
            raise GrantError(f"a camera-scoped key cannot hold {', '.join(forbidden)}")
    grant = Grant(role, caps, scope_kind, tuple(sorted(set(cameras))))
    newly_privileged = (grant.effective & PRIVILEGED) - previously
    if newly_privileged and not confirm_privileged:
        raise GrantError(f"granting {', '.join(sorted(newly_privileged))} needs confirm_privileged: true")
    return grant


def grant_from_row(role: Any, capabilities: Any, scope_kind: Any, scope_cameras: Any) -> tuple[Grant | None, list[str]]:
    """(grant, unknown capability slugs) from a stored row; grant is None when the row is malformed
    or contradictory, and such a key authenticates nobody."""
    if role not in ROLES or scope_kind not in SCOPE_KINDS or not isinstance(scope_cameras, list):
        return None, []
    unknown: list[str] = []
    caps: tuple[str, ...] | None = None
    if capabilities is not None:
        if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
            return None, []
        unknown = sorted({c for c in capabilities if c not in CAPABILITIES})
        caps = tuple(sorted({c for c in capabilities if c in CAPABILITIES}))
        if not caps:
            return None, unknown
    if scope_kind == "cameras":
        if caps is None or not scope_cameras or set(caps) & NOT_SCOPABLE:
            return None, unknown
        if not all(isinstance(c, str) and c.strip() for c in scope_cameras):
            return None, unknown
    elif scope_cameras:
        return None, unknown
    return Grant(role, caps, scope_kind, tuple(sorted(set(scope_cameras)))), unknown


def _short(value: str) -> str:
    return repr(value[:40])
