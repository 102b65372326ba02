"""Joining or starting the Ray cluster heldar runs on."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ray

from config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayConnection:
    owns_cluster: bool
    dashboard_url: str | None
    address: str


def connect_ray(settings: Settings, *, dashboard: bool | None = None) -> RayConnection:
    """Join ``HELDAR_RAY_ADDRESS`` when set, else start a local Ray owned by this process."""
    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        return RayConnection(False, None, ctx.gcs_address)
    if settings.ray_address:
        info = ray.init(address=settings.ray_address, namespace=settings.ray_namespace, log_to_driver=False)
        owns = False
    else:
        with_dashboard = settings.ray_dashboard if dashboard is None else dashboard
        info = ray.init(
            namespace=settings.ray_namespace,
            include_dashboard=with_dashboard,
            dashboard_host=settings.ray_dashboard_host,
            log_to_driver=False,
            configure_logging=False,
        )
        owns = True
    dashboard_url = info.dashboard_url or None
    if dashboard_url and not dashboard_url.startswith("http"):
        dashboard_url = f"http://{dashboard_url}"
    return RayConnection(owns, dashboard_url, info.address_info.get("gcs_address", ""))
