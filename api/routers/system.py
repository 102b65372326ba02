"""The box overview and retention overrides: ``/api/v1/system``, ``/api/v1/system/retention``; storage metrics.

Overrides live in the database (``retention_overrides``) and shadow ``HELDAR_MAX_RECORDINGS_GB`` /
``HELDAR_MIN_FREE_DISK_GB``; the sweeper reads them at its next sweep. ``PUT`` takes a number to set a
value or ``null`` to go back to the environment's (admin only, audited).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AppState, app_state, audit, get_pool, require, require_fleet
from api.openapi import sends
from config import Settings
from heldar import __version__
from heldar.auth.capabilities import Principal
from heldar.errors import Invalid
from heldar.storage import retention as policy
from heldar.storage.sweeper import disk_figures
from heldar.store import retention as retention_store
from heldar.store import storage as storage_store

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/system", tags=["system"])

_STARTED_MONO = time.monotonic()
_STARTED_AT = datetime.now(UTC)
SCRAPE_TIMEOUT_S = 2.0


class RetentionView(BaseModel):
    """The retention limits in force, and whether each is an override or the environment's."""

    max_recordings_gb: float = Field(description="Recordings are deleted, oldest first, beyond this many GB.")
    max_recordings_bytes: int = Field(description="The same cap in bytes.")
    max_overridden: bool = Field(description="True when set here; false: `HELDAR_MAX_RECORDINGS_GB`.")
    min_free_disk_gb: float = Field(description="Recordings are deleted while the disk has less free than this.")
    min_free_disk_bytes: int = Field(description="The same floor in bytes.")
    min_free_overridden: bool = Field(description="True when set here; false: `HELDAR_MIN_FREE_DISK_GB`.")


class RetentionBody(BaseModel):
    """Retention overrides to set; a field set to null goes back to the environment's value."""

    model_config = ConfigDict(extra="forbid")
    max_recordings_gb: float | None = Field(None, gt=0, le=1_000_000, description="The recordings cap in GB.")
    min_free_disk_gb: float | None = Field(None, ge=0, le=1_000_000, description="The free-disk floor in GB.")


class DiskView(BaseModel):
    """The filesystem that holds the recordings."""

    total: int = Field(description="Size in bytes.")
    free: int = Field(description="Bytes available to heldar.")
    used: int = Field(description="Bytes in use.")
    path: str = Field(description="The recordings root (`HELDAR_RECORDINGS_ROOT`).")


class SweepView(BaseModel):
    """The last retention sweep."""

    started_at: datetime = Field(description="When it started (UTC).")
    finished_at: datetime = Field(description="When it finished (UTC).")
    ok: bool = Field(description="Whether it completed without errors.")
    leader: str = Field(description="The API process that ran it.")
    outcome: dict[str, Any] = Field(description="What it deleted and why, by reason.")


class StorageView(BaseModel):
    """Storage use, growth and retention."""

    disk: DiskView | None = Field(description="The recordings filesystem; null when it cannot be read.")
    oldest_segment: datetime | None = Field(description="Start of the oldest recorded segment.")
    newest_segment: datetime | None = Field(description="End of the newest recorded segment.")
    write_rate_bytes_per_day: int = Field(description="Bytes recorded in the last 24 hours.")
    projected_days_remaining: float | None = Field(description="Days until the disk fills at that rate.")
    retention: RetentionView = Field(description="The retention limits in force.")
    evidence_locked_bytes: int = Field(description="Bytes under evidence lock (on the whole box).")
    evidence_locked_segments: int = Field(description="Segments under evidence lock.")
    evidence_locks_exceed_cap: bool = Field(description="True when locked footage alone fills the recordings cap.")
    last_sweep: SweepView | None = Field(description="The last retention sweep; null before the first.")


class SystemView(BaseModel):
    """The box at a glance (counts limited to the credential's cameras)."""

    name: str = Field(description="Always `heldar`.")
    version: str = Field(description="The running heldar version.")
    started_at: datetime = Field(description="When this API process started (UTC).")
    uptime_seconds: float = Field(description="Seconds since this API process started.")
    recorder_enabled: bool = Field(description="Whether recording is on (`HELDAR_RECORDER_ENABLED`).")
    cameras_total: int = Field(description="Registered cameras.")
    cameras_recording: int = Field(description="Enabled cameras whose recorder is recording.")
    segments_total: int = Field(description="Indexed segments.")
    recordings_bytes: int = Field(description="Bytes of indexed recordings.")
    recordings_gb: float = Field(description="The same in GB.")
    max_recordings_gb: float = Field(description="The recordings cap in force, GB.")
    storage: StorageView = Field(description="Disk use, the write rate, evidence locks and retention.")


async def _limits(pool: asyncpg.Pool, settings: Settings) -> policy.Limits:
    overrides = await retention_store.get_overrides(pool)
    return policy.resolve_limits(
        settings.max_recordings_gb,
        settings.min_free_disk_gb,
        overrides.get("max_recordings_gb"),
        overrides.get("min_free_disk_gb"),
    )


def _retention_view(limits: policy.Limits) -> RetentionView:
    return RetentionView(
        max_recordings_gb=round(limits.max_recordings_gb, 6),
        max_recordings_bytes=limits.max_recordings_bytes,
        max_overridden=limits.max_overridden,
        min_free_disk_gb=round(limits.min_free_disk_gb, 6),
        min_free_disk_bytes=limits.min_free_disk_bytes,
        min_free_overridden=limits.min_free_overridden,
    )


@router.get("", summary="Get the box overview", responses=sends(SystemView))
async def system(
    principal: Principal = require("system:read"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, Any]:
    """Version, uptime, camera and segment counts, disk use, the write rate and days until the disk is full,
    evidence locks and the last retention sweep."""
    scope = None if principal.camera_scope is None else sorted(principal.camera_scope)
    overview = await storage_store.storage_overview(pool, scope)
    limits = await _limits(pool, state.settings)
    disk = await asyncio.to_thread(disk_figures, state.settings.recordings_root)
    last = await retention_store.last_sweep(pool)
    written = int(overview["written_last_24h"])
    locked = await storage_store.evidence_locked_bytes(pool)  # the whole box: locks count against one cap
    return {
        "name": "heldar",
        "version": __version__,
        "started_at": _STARTED_AT,
        "uptime_seconds": round(time.monotonic() - _STARTED_MONO, 1),
        "recorder_enabled": state.settings.recorder_enabled,
        "cameras_total": overview["cameras_total"],
        "cameras_recording": overview["cameras_recording"],
        "segments_total": overview["segments_total"],
        "recordings_bytes": overview["recordings_bytes"],
        "recordings_gb": round(overview["recordings_bytes"] / policy.GB, 3),
        "max_recordings_gb": round(limits.max_recordings_gb, 6),
        "storage": {
            "disk": None if disk is None else {**disk, "path": str(state.settings.recordings_root)},
            "oldest_segment": overview["oldest_segment"],
            "newest_segment": overview["newest_segment"],
            "write_rate_bytes_per_day": written,
            "projected_days_remaining": policy.days_remaining(None if disk is None else disk["free"], written),
            "retention": _retention_view(limits).model_dump(),
            "evidence_locked_bytes": locked,
            "evidence_locked_segments": overview["evidence_locked_segments"],
            "evidence_locks_exceed_cap": locked >= limits.max_recordings_bytes,
            "last_sweep": last,
        },
    }


@router.get("/retention", response_model=RetentionView, summary="Get the retention limits")
async def get_retention(
    _: Principal = require("system:read"), state: AppState = Depends(app_state), pool: asyncpg.Pool = Depends(get_pool)
) -> RetentionView:
    """The recordings cap and free-disk floor in force, and which are overrides."""
    return _retention_view(await _limits(pool, state.settings))


@router.put("/retention", response_model=RetentionView, summary="Override the retention limits")
async def put_retention(
    body: RetentionBody,
    principal: Principal = require_fleet("admin"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> RetentionView:
    """Set either limit (a number) or clear its override (null); the sweeper uses them at its next sweep.
    Audited. 422 when the body names neither."""
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    if not changes:
        raise Invalid("validation failed: name max_recordings_gb and/or min_free_disk_gb (null clears an override)")
    await retention_store.set_overrides(pool, changes, principal.name)
    limits = await _limits(pool, state.settings)
    logger.info("retention overrides changed by %s: %s", principal.name, changes)
    await audit(state, principal, "retention_update", "system", "retention", {"changes": changes})
    return _retention_view(limits)


# --- /metrics -----------------------------------------------------------------------------------


class _StorageSnapshot(Collector):
    def __init__(self, disk: dict[str, int] | None, totals: dict[str, tuple[int, int]], last: Any, locked: int) -> None:
        self.disk, self.totals, self.last, self.locked = disk, totals, last, locked

    def collect(self) -> Iterator[Metric]:
        if self.disk is not None:
            total = GaugeMetricFamily("heldar_disk_total_bytes", "Size of the recordings filesystem")
            total.add_metric([], self.disk["total"])
            free = GaugeMetricFamily("heldar_disk_free_bytes", "Free space on the recordings filesystem (available)")
            free.add_metric([], self.disk["free"])
            used = GaugeMetricFamily("heldar_disk_used_ratio", "Used share of the recordings filesystem (0 to 1)")
            used.add_metric([], round(1 - self.disk["free"] / self.disk["total"], 5) if self.disk["total"] else 0)
            yield from (total, free, used)
        segments = CounterMetricFamily(
            "heldar_retention_deleted_segments", "Segments removed by retention, by reason", labels=["reason"]
        )
        size = CounterMetricFamily(
            "heldar_retention_deleted_bytes", "Bytes removed by retention, by reason", labels=["reason"]
        )
        for reason in policy.REASONS:
            n, b = self.totals.get(reason, (0, 0))
            segments.add_metric([reason], float(n))
            size.add_metric([reason], float(b))
        yield from (segments, size)
        if self.last is not None:
            ts = GaugeMetricFamily("heldar_retention_last_sweep_timestamp_seconds", "When the last sweep finished")
            ts.add_metric([], self.last["finished_at"].timestamp())
            yield ts
        locked = GaugeMetricFamily("heldar_evidence_locked_bytes", "Bytes of evidence-locked footage")
        locked.add_metric([], float(self.locked))
        yield locked


async def collect_storage_metrics(state: AppState) -> bytes:
    if state.pool is None:
        return b""
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            totals = await retention_store.totals(state.pool)
            last = await retention_store.last_sweep(state.pool)
            locked = await storage_store.evidence_locked_bytes(state.pool)
            disk = await asyncio.to_thread(disk_figures, state.settings.recordings_root)
    except Exception as exc:
        logger.warning("storage metrics unavailable: %s", exc.__class__.__name__)
        return b""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StorageSnapshot(disk, totals, last, locked))
    return generate_latest(registry)


def storage_metrics_source(state: AppState) -> Any:
    async def collect() -> bytes:
        return await collect_storage_metrics(state)

    return collect
