"""Finding and creating the named actors; the API and CLI use only these handles."""

from __future__ import annotations

import logging
from typing import Any

import ray

from actors.supervisor import SUPERVISOR_NAME, Supervisor
from config import Settings

logger = logging.getLogger(__name__)


def ensure_supervisor(settings: Settings, database_url: str, *, timeout_s: float = 120.0) -> Any:
    """Create the detached ``supervisor`` (or find the running one), push the current settings to it, and wait
    until it is active or a standby. A supervisor found running gets the new settings (no silent drift)."""
    values = settings.for_actors()  # no secret travels as an actor argument: the URL goes as a reference
    handle = Supervisor.options(  # type: ignore[attr-defined]
        name=SUPERVISOR_NAME,
        namespace=settings.ray_namespace,
        lifetime="detached",
        get_if_exists=True,
    ).remote(values, settings.database_ref(database_url))
    ray.get(handle.configure.remote(values), timeout=timeout_s)
    ray.get(handle.start.remote(), timeout=timeout_s)
    return handle


def get_supervisor(namespace: str) -> Any | None:
    try:
        return ray.get_actor(SUPERVISOR_NAME, namespace=namespace)
    except ValueError:
        return None
