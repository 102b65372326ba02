"""What an audit row says about its subject camera (§3.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FLEET_WILDCARD = "*"


def subject_camera_id(target_type: str | None, target_id: str | None, detail: Mapping[str, Any]) -> str | None:
    """The camera an audited action concerns, or None for fleet-level actions.

    The target when it is a camera; else ``detail.camera_id``; else the single entry of
    ``detail.camera_ids``. The bulk wildcard ``*`` (and anything that is not a plain string) is fleet-level.
    """
    candidate: Any = None
    if target_type == "camera":
        candidate = target_id
    elif detail.get("camera_id") is not None:
        candidate = detail.get("camera_id")
    else:
        ids = detail.get("camera_ids")
        if isinstance(ids, list | tuple) and len(ids) == 1:
            candidate = ids[0]
    if not isinstance(candidate, str) or not candidate or candidate == FLEET_WILDCARD:
        return None
    return candidate
