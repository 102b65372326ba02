"""The FastAPI app factory: thin wiring of routers over the store and the actors' handles."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import mqtt_wiring
from api.auth_wiring import install_auth
from api.camera_metrics import camera_metrics_source
from api.deps import AppState
from api.errors import install_error_handlers
from api.metrics import ApiMetrics, HttpMetricsMiddleware
from api.middleware import install_request_guards
from api.openapi import TAGS, install_openapi, readable_operation_id
from api.routers import (
    ai_tasks,
    ai_workers,
    api_keys,
    audit,
    auth,
    camera_health,
    cameras,
    clips,
    console,
    event_recording,
    events,
    evidence,
    health,
    integrity,
    liveview,
    media,
    playback,
    recording_gaps,
    recordings,
    schedules,
    snapshots,
    system,
    users,
    webhooks,
    zones,
)
from api.supervisor_link import SupervisorLink
from config import Settings
from heldar import __version__
from heldar.store.database import close_pool, create_pool

logger = logging.getLogger(__name__)


def begin_stopping(app: FastAPI) -> None:
    """The server stops taking requests: run the ``stopping_hooks`` (they end open event streams) so the
    graceful shutdown does not wait on requests that never end by themselves."""
    state: AppState = app.state.heldar
    for hook in state.extras.get("stopping_hooks", []):
        try:
            hook(state)
        except Exception as exc:
            logger.warning("stopping hook %r failed: %s", hook, exc.__class__.__name__)


def create_app(settings: Settings, database_url: str, *, supervisor: SupervisorLink | None = None) -> FastAPI:
    """Build the app. The pool opens at startup; ``supervisor`` links to the Ray actors (optional)."""
    state = AppState(settings=settings, supervisor=supervisor)
    state.extras["database_url"] = database_url  # perception: the API creates the ingest actor when missing

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool = await create_pool(
            database_url,
            max_size=settings.db_max_connections,
            min_size=1,
            timeout=settings.db_connect_timeout_s,
        )
        for hook in state.extras.get("startup_hooks", []):
            await hook(state)
        try:
            yield
        finally:
            for hook in reversed(state.extras.get("shutdown_hooks", [])):
                try:
                    await hook(state)
                except Exception as exc:
                    logger.warning("shutdown hook %r failed: %s", hook, exc)
            await close_pool(state.pool)
            state.pool = None

    app = FastAPI(
        title="heldar",
        version=__version__,
        description="Open camera supervision kernel: recording, gaps, back-fill, perception events.",
        lifespan=lifespan,
        openapi_tags=TAGS,
        generate_unique_id_function=readable_operation_id,
    )
    app.state.heldar = state
    app.state.metrics = ApiMetrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.metrics)  # plain ASGI, inside the auth floor
    app.state.metrics.install_process_collector(state)  # db pool, event streams, event listener
    state.extras["webhook_observer"] = app.state.metrics.webhook_delivery
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(cameras.router)
    for area in (recordings, recording_gaps, event_recording, camera_health, media):
        app.include_router(area.router)
    app.include_router(schedules.router)  # recording schedules
    state.extras.setdefault("metric_sources", []).append(camera_metrics_source(state))
    for area in (ai_tasks, ai_workers):  # perception: AI tasks and the worker SDK
        app.include_router(area.router)
    state.extras["metric_sources"].append(ai_workers.perception_metrics_source(state))
    for area in (clips, snapshots, playback, integrity, liveview):  # media plane: clips, snapshots, playback
        app.include_router(area.router)
    for area in (evidence, system):  # storage: evidence locks, incidents, the box overview, retention overrides
        app.include_router(area.router)
    state.extras["metric_sources"].append(system.storage_metrics_source(state))
    install_auth(app)
    for area in (auth, users, api_keys, audit):
        app.include_router(area.router)
    for area in (zones, events, webhooks):
        app.include_router(area.router)
    app.include_router(zones.media_router)  # /media/evidence: zone evidence frames
    events.install(state, database_url)  # LISTEN/NOTIFY fan-out for /events/stream
    webhooks.install(state)  # the webhook notifier task (after the listener: it wakes on new events)
    mqtt_wiring.install(state)  # the MQTT sink task when HELDAR_MQTT_URL is set (wakes on new events too)
    app.include_router(console.router)  # operator console: /console (static, CSP), / redirects there
    install_openapi(app)  # the document: security schemes, capabilities, the error schema
    install_request_guards(app, settings)  # security: body limits, CSRF, allowed hosts (outermost)
    return app
