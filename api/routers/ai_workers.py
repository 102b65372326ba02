"""The worker SDK over HTTP (upstream contract): discovery, leases, frames with tickets, ingest, reads.

* ``GET /api/v1/ai/tasks?worker_id=`` heartbeats the worker and answers its shard of the enabled tasks.
* ``POST /api/v1/ai/leases`` acquires or renews per-task leases within the shard; ``DELETE`` releases.
* ``GET /api/v1/cameras/{id}/frame`` serves the sampler's latest JPEG (from the ``sampler:<cam>:<profile>``
  actor, so any API process can), with ``x-frame-ticket`` when ``?task=`` names a task the caller leases.
* ``POST /api/v1/ai/events`` ingests a batch (≤ 1000 detections, ≤ 8 MiB); a ticket binds it to the
  caller's credential, the lease's camera and the frame (another credential's ticket is refused). A
  ticketless timestamp more than 60 s ahead of the server clock, or older than the detection retention
  horizon (``HELDAR_DETECTION_RETENTION_HOURS``), is refused (400, saying why). After the commit the
  batch is handed to the ``ingest`` actor's consumers at once (the actor is created if it is not running;
  without Ray, to consumers in this process); the outbox replay stays the safety net.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from api.deps import AppState, app_state, get_pool, require, require_camera
from api.openapi import errors, json_body, sends
from heldar.auth.capabilities import Principal
from heldar.errors import BadRequest, Conflict, Forbidden, HeldarError, NotFound, TooManyRequests, Unauthorized
from heldar.ids import new_id
from heldar.perception import metrics as perception_metrics
from heldar.perception.budget import UnitRequest, allocate
from heldar.perception.detections import Detection, DetectionBatch
from heldar.perception.ingest import (
    ConsumerContext,
    FanOut,
    check_bbox,
    check_captured_at,
    check_event_type,
    load_consumers,
    prepare_worker_batch,
)
from heldar.perception.sharding import WORKER_LIVE_S, shard
from heldar.perception.tickets import TicketError, mint_ticket, parse_ticket, verify_ticket
from heldar.store import cameras as camera_store
from heldar.store import perception as store
from heldar.store.events import insert_event

logger = logging.getLogger(__name__)
router = APIRouter(tags=["ai-workers"])

MAX_BODY = 8 * 1024 * 1024
MAX_LEASE_TASKS = 512
UNLEASED_WARN_EVERY_S = 3600.0


class PayloadTooLarge(HeldarError):
    status = 413


# --- discovery and leases -------------------------------------------------------------------------
def _frame_url(task: dict[str, Any]) -> str:
    return f"/api/v1/cameras/{task['camera_id']}/frame?profile={task['stream_profile']}&task={task['id']}"


def _task_view(task: dict[str, Any]) -> dict[str, Any]:
    return {"id": task["id"], "camera_id": task["camera_id"], "task_type": task["task_type"],
            "stream_profile": task["stream_profile"], "fps": task["fps"], "width": task["width"],
            "config": task["config"], "frame_url": _frame_url(task)}  # fmt: skip


async def _my_shard(pool: asyncpg.Pool, principal: Principal, worker_id: str | None) -> list[dict[str, Any]]:
    scope = sorted(principal.camera_scope) if principal.camera_scope is not None else None
    tasks = await store.enabled_tasks(pool, scope)  # scope filter before the shard
    live: list[str] = []
    if worker_id:
        previous = await store.heartbeat_worker(pool, worker_id, principal.id)
        if previous is not None:
            logger.warning("worker id %s moved from credential %s to %s", worker_id[:64], previous, principal.id)
        live = await store.live_workers(pool, principal.id, WORKER_LIVE_S)
    return shard(tasks, live, worker_id)


class WorkerTask(BaseModel):
    """A task as a worker sees it: what to run on which camera's frames."""

    id: str = Field(description="The task's id (`tsk_...`).")
    camera_id: str = Field(description="The camera whose frames the task analyses.")
    task_type: str = Field(description="The analyzer to run (`person`, `motion`, or a plugin's name).")
    stream_profile: Literal["sub", "main"] = Field(description="Which of the camera's streams to sample.")
    fps: float = Field(description="The frame rate the task asks for.")
    width: int = Field(description="The width frames are scaled to, pixels.")
    config: dict[str, Any] = Field(description="The analyzer's own settings, as the task stores them.")
    frame_url: str = Field(description="Where to fetch the latest frame with a ticket for this task.")


class Lease(BaseModel):
    """The leases one request acquired or renewed."""

    lease_id: str = Field(description="The lease's id (`lse_...`); release it with `DELETE /ai/leases/{id}`.")
    worker_id: str = Field(description="The worker the leases belong to.")
    expires_at: datetime = Field(description="When the leases lapse unless renewed (UTC).")
    tasks: list[WorkerTask] = Field(description="The tasks now leased to this worker (may be fewer than asked).")


class Released(BaseModel):
    """How many task leases a release ended."""

    released: int = Field(description="The number of task leases released.")


class SamplerState(BaseModel):
    """One (camera, profile) sampler: the budget's grant and, when it runs, its live counters."""

    camera_id: str = Field(description="The camera sampled.")
    stream_profile: Literal["sub", "main"] = Field(description="The stream sampled.")
    fps: float = Field(description="Frames per second the budget grants (`HELDAR_AI_MAX_TOTAL_FPS`).")
    width: int = Field(description="The granted frame width, pixels.")
    state: str = Field(
        description="The sampler's state (`connecting`, `sampling`, `offline`, `stopped`), or `budget_exhausted`."
    )
    fps_actual: float | None = Field(None, description="Frames per second actually sampled.")
    frames_sampled: int | None = Field(None, description="Frames sampled since the sampler started.")
    frames_dropped: int | None = Field(None, description="Frames dropped (no consumer was ready).")
    in_flight: int | None = Field(None, description="Frames handed out and not yet analysed.")


class IngestResult(BaseModel):
    """What an ingest stored."""

    detections_ingested: int = Field(description="Detection rows stored (0 for a duplicate frame).")
    duplicate: bool | None = Field(None, description="True when this (camera, frame_id) was ingested before.")
    ticketed: bool = Field(description="Whether the batch carried a valid frame ticket.")


class StoredDetection(BaseModel):
    """A stored detection."""

    id: str = Field(description="The detection's id.")
    camera_id: str = Field(description="The camera it was seen on.")
    task_type: str = Field(description="The analyzer that produced it.")
    timestamp: datetime = Field(description="When the frame was captured (UTC).")
    label: str | None = Field(description="What was detected (`person`, ...).")
    confidence: float | None = Field(description="The analyzer's confidence, 0 to 1.")
    bbox: list[float] | None = Field(description="Bounding box `[x1, y1, x2, y2]`, normalised 0 to 1.")
    track_id: str | None = Field(description="The tracker's id for the object across frames.")
    attributes: dict[str, Any] = Field(description="Extra attributes the analyzer attached.")
    frame_id: str = Field(description="The frame it was found in.")
    provenance: str = Field(description="Who produced it: `worker`, or `kernel:<producer>` for a built-in.")
    created_at: datetime = Field(description="When it was stored (UTC).")


@router.get(
    "/api/v1/ai/tasks",
    summary="Discover the tasks this worker should run",
    responses=sends(list[WorkerTask], description="The enabled tasks in this worker's shard."),
)
async def discover_tasks(
    worker_id: str | None = Query(
        None, min_length=1, max_length=128, description="This worker's id; sends a heartbeat and shards the tasks."
    ),
    principal: Principal = require("ai:tasks"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[dict[str, Any]]:
    """Enabled tasks on enabled cameras by id; with ``worker_id`` a heartbeat and only that worker's shard
    (the live workers of one credential split the tasks between them)."""
    return [_task_view(t) for t in await _my_shard(pool, principal, worker_id)]


class LeaseRequest(BaseModel):
    """Which tasks to lease, for how long."""

    worker_id: str = Field(min_length=1, max_length=128, description="The worker taking the leases.")
    ttl_secs: float = Field(60, description="Lease length in seconds (clamped to 15-300); renew before it ends.")
    task_types: list[str] | None = Field(None, description="Only tasks of these types; all types when null.")
    max_tasks: int = Field(
        MAX_LEASE_TASKS, ge=1, le=MAX_LEASE_TASKS, description="At most this many tasks in this lease."
    )


@router.post(
    "/api/v1/ai/leases",
    summary="Acquire or renew task leases",
    responses=sends(Lease, description="The leases held now.")
    | errors(e429="This credential already holds its maximum of live leases (`HELDAR_AI_MAX_LEASES_PER_CREDENTIAL`)."),
)
async def acquire_leases(
    body: LeaseRequest,
    principal: Principal = require("ai:ingest"),  # security F19: read-only roles cannot starve real workers
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, Any]:
    """Acquire or renew leases on the caller's shard; a task leased by someone else (live) is skipped. One
    credential holds at most ``HELDAR_AI_MAX_LEASES_PER_CREDENTIAL`` live leases (429 when it has them all)."""
    ttl = max(15.0, min(300.0, body.ttl_secs))
    tasks = await _my_shard(pool, principal, body.worker_id)
    if body.task_types:
        tasks = [t for t in tasks if t["task_type"] in set(body.task_types)]
    tasks = tasks[: body.max_tasks]
    mine = await store.live_lease_tasks(pool, principal.id)
    asked = {t["id"] for t in tasks}
    room = state.settings.ai_max_leases_per_credential - len(mine - asked)
    if tasks and room <= 0:
        raise TooManyRequests("this credential holds its maximum of live task leases", 15.0)
    tasks = sorted(tasks, key=lambda t: t["id"] not in mine)[: max(0, room)]  # renewals first
    lease_id = new_id("lse")
    claimed = set(await store.claim_leases(pool, lease_id=lease_id, api_key_id=principal.id,
                                           worker_id=body.worker_id, tasks=tasks, ttl_s=ttl))  # fmt: skip
    expires = datetime.fromtimestamp(time.time() + ttl, UTC)
    return {"lease_id": lease_id, "worker_id": body.worker_id, "expires_at": expires,
            "tasks": [_task_view(t) for t in tasks if t["id"] in claimed]}  # fmt: skip


@router.delete("/api/v1/ai/leases/{lease_id}", response_model=Released, summary="Release a lease")
async def release_leases(
    lease_id: str, principal: Principal = require("ai:ingest"), pool: asyncpg.Pool = Depends(get_pool)
) -> dict[str, int]:
    """Ends this credential's leases under ``lease_id`` at once (another credential's are untouched)."""
    return {"released": await store.release_lease(pool, lease_id[:80], principal.id)}


# --- samplers and frames --------------------------------------------------------------------------
def _ray_ready() -> bool:
    import ray

    return bool(ray.is_initialized())


async def _sampler_stats(namespace: str, camera_id: str, profile: str) -> dict[str, Any] | None:
    if not _ray_ready():
        return None
    from actors.sampler import get_sampler

    handle = get_sampler(namespace, camera_id, profile)
    if handle is None:
        return None
    try:
        return await asyncio.wait_for(handle.stats.remote(), 2.0)  # type: ignore[no-any-return]
    except Exception:
        return None


@router.get(
    "/api/v1/ai/samplers",
    summary="List the frame samplers",
    responses=sends(list[SamplerState], description="One entry per (camera, stream profile) with enabled tasks."),
)
async def list_samplers(
    principal: Principal = require("ai:tasks"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[dict[str, Any]]:
    """Per (camera, profile): the budget's grant and the sampler's live state."""
    units = [u for u in await store.sampler_units(pool) if principal.sees_camera(u.camera_id)]
    grants = {g.key: g for g in allocate([UnitRequest(u.camera_id, u.profile, u.fps, u.width, u.priority)
                                          for u in units], state.settings.ai_max_total_fps)}  # fmt: skip
    stats = await asyncio.gather(*(_sampler_stats(state.settings.ray_namespace, *u.key) for u in units))
    out = []
    for unit, live in zip(units, stats, strict=True):
        grant = grants[unit.key]
        row = {"camera_id": unit.camera_id, "stream_profile": unit.profile, "fps": grant.fps, "width": grant.width,
               "state": grant.state if grant.fps <= 0 else (live or {}).get("state", "stopped")}  # fmt: skip
        if live:
            row.update({k: live.get(k) for k in ("fps_actual", "frames_sampled", "frames_dropped", "in_flight")})
        out.append(row)
    return out


async def _ticket_secret(state: AppState, pool: asyncpg.Pool) -> bytes:
    secret = state.extras.get("frame_ticket_secret")
    if secret is None:
        configured = state.settings.frame_ticket_secret
        secret = configured.encode() if configured else await store.frame_ticket_secret(pool)
        state.extras["frame_ticket_secret"] = secret
    return secret  # type: ignore[no-any-return]


_FRAME_HEADERS = {
    "Cache-Control": {"description": "`no-store`.", "schema": {"type": "string"}},
    "x-frame-age-ms": {"description": "How old the frame is, milliseconds.", "schema": {"type": "integer"}},
    "x-frame-captured-at": {"description": "When it was captured, RFC 3339 UTC.", "schema": {"type": "string"}},
    "x-frame-ticket": {
        "description": "With `?task=` naming a task this credential leases: the ticket to send with its detections.",
        "schema": {"type": "string"},
    },
}


@router.get(
    "/api/v1/cameras/{camera_id}/frame",
    response_class=Response,
    summary="Fetch the latest sampled frame (JPEG)",
    responses={
        200: {
            "description": "The newest frame the camera's sampler holds.",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
            "headers": _FRAME_HEADERS,
        }
    },
)
async def latest_frame(
    camera_id: str,
    profile: Literal["sub", "main"] = Query("sub", description="Which stream's sampler to ask."),
    task: str | None = Query(None, max_length=80, description="A task this credential leases: adds a frame ticket."),
    principal: Principal = require_camera("ai:frames"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """The sampler's latest JPEG for the camera and profile (any API process can serve it); 404 while no
    frame has been sampled (no enabled task, the sampler starting, or no Ray in this process)."""
    await camera_store.ensure_camera(pool, camera_id)
    frame = None
    if _ray_ready():
        from actors.sampler import get_sampler

        handle = get_sampler(state.settings.ray_namespace, camera_id, profile)
        if handle is not None:
            try:
                frame = await asyncio.wait_for(handle.latest_frame.remote(), 5.0)
            except Exception as exc:
                logger.warning("sampler %s/%s did not answer: %s", camera_id, profile, exc.__class__.__name__)
    if frame is None:
        raise NotFound("no frame sampled yet for this camera and profile")
    captured: datetime = frame["captured_at"]
    captured_ms = int(captured.timestamp() * 1000)
    headers = {
        "Cache-Control": "no-store",
        "x-frame-age-ms": str(max(0, int(time.time() * 1000) - captured_ms)),
        "x-frame-captured-at": captured.isoformat().replace("+00:00", "Z"),
    }
    if task:
        lease = await store.live_lease(pool, task, principal.id)
        if lease is not None and lease["camera_id"] == camera_id and lease["active"]:
            secret = await _ticket_secret(state, pool)
            headers["x-frame-ticket"] = mint_ticket(
                secret, key_id=principal.id, camera_id=camera_id, task_id=task, captured_ms=captured_ms,
                now=time.time(), ttl_s=state.settings.frame_ticket_ttl_s,
            )  # fmt: skip
    return Response(frame["jpeg"], media_type="image/jpeg", headers=headers)


# --- ingest ---------------------------------------------------------------------------------------
class DetectionIn(BaseModel):
    """One object found in the frame."""

    label: str | None = Field(None, max_length=128, description="What was detected (`person`, `car`, ...).")
    confidence: float | None = Field(None, ge=0, le=1, description="The analyzer's confidence, 0 to 1.")
    bbox: list[float] | None = Field(
        None, description="Bounding box `[x1, y1, x2, y2]`, normalised 0 to 1 (x1 < x2, y1 < y2)."
    )
    track_id: str | None = Field(None, max_length=128, description="The worker's tracker id across frames.")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Extra attributes, stored as given.")


class EventIn(BaseModel):
    """An event the worker raises with the frame (it enters the event log and webhooks)."""

    event_type: str = Field(description="The event's type, `[a-z0-9_]{1,64}`, not a prefix reserved for kernel events.")
    severity: Literal["info", "warning", "critical"] = Field("info", description="How serious it is.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Anything the worker wants to attach.")


class AiIngest(BaseModel):
    """One analysed frame: its detections and optionally an event."""

    camera_id: str = Field(min_length=1, max_length=64, description="The camera the frame came from.")
    task_type: str = Field(min_length=1, max_length=64, description="The analyzer that produced the detections.")
    timestamp: str | None = Field(
        None, description="When the frame was captured, RFC 3339 with a zone; ignored with a frame ticket."
    )
    frame_id: str | None = Field(
        None, min_length=1, max_length=200, description="The frame's id; ingest is idempotent per (camera, frame)."
    )
    worker_id: str | None = Field(None, max_length=128, description="The worker sending the batch.")
    detections: list[DetectionIn] = Field(default_factory=list, description="At most 1000 detections.")
    event: EventIn | None = Field(None, description="An event raised with this frame.")
    frame_ticket: str | None = Field(
        None, max_length=256, description="The `x-frame-ticket` the frame came with (binds camera, task, time)."
    )


async def _verify(state: AppState, pool: asyncpg.Pool, principal: Principal, body: AiIngest) -> tuple[str, int, str]:
    """(task id, captured ms, frame id) of a valid ticket, checked as upstream: lease 401, MAC/expiry 401,
    task/camera enabled 403, body agrees 409."""
    assert body.frame_ticket is not None
    try:
        claims = parse_ticket(body.frame_ticket)
    except TicketError as exc:
        raise Unauthorized(str(exc)) from None
    lease = await store.live_lease(pool, claims.task_id, principal.id)
    if lease is None:
        raise Unauthorized("frame ticket: no live lease on its task for this credential")
    try:
        verify_ticket(await _ticket_secret(state, pool), body.frame_ticket, key_id=principal.id,
                      camera_id=lease["camera_id"], now=time.time())  # fmt: skip
    except TicketError as exc:
        raise Unauthorized(str(exc)) from None
    if not lease["active"]:
        raise Forbidden("the ticket's task or camera is disabled")
    if body.camera_id != lease["camera_id"] or body.task_type != lease["task_type"]:
        raise Conflict("body camera_id/task_type contradict the frame ticket")
    if body.frame_id is not None and body.frame_id != claims.frame_id:
        raise Conflict("body frame_id contradicts the frame ticket")
    return claims.task_id, claims.captured_ms, claims.frame_id


def _ingest_actor(state: AppState) -> Any:
    """The cluster's ingest actor; created (with this process's settings) when it does not exist."""
    from actors.ingest import ensure_ingest, get_ingest

    handle = state.extras.get("ingest_actor")
    if handle is None:
        handle = get_ingest(state.settings.ray_namespace)
        database_url = state.extras.get("database_url")
        if handle is None and database_url:
            handle = ensure_ingest(state.settings, database_url)
        elif handle is not None:
            handle.configure.remote(state.settings.model_dump(mode="json"))  # no actor keeps old settings
        state.extras["ingest_actor"] = handle
    return handle


async def _watch_delivery(state: AppState, ref: Any) -> None:
    try:
        await asyncio.wait_for(ref, 30)
    except Exception as exc:
        state.extras.pop("ingest_actor", None)  # look the actor up (or create it) again next time
        logger.warning("ingest actor did not take an HTTP batch (%s); the replay delivers it", exc.__class__.__name__)


async def _fan_out(state: AppState, pool: asyncpg.Pool, batch: DetectionBatch) -> None:
    """Hand a committed batch to the consumers now; on any failure the outbox replay delivers it later."""
    try:
        if _ray_ready():
            handle = _ingest_actor(state)
            if handle is not None:
                # not awaited here: the reply does not wait for the zone engine; a watcher notices a dead handle
                watch = asyncio.get_running_loop().create_task(_watch_delivery(state, handle.deliver.remote([batch])))
                watchers: set[asyncio.Task[None]] = state.extras.setdefault("fanout_watchers", set())
                watchers.add(watch)
                watch.add_done_callback(watchers.discard)
                return
        fanout = state.extras.get("local_fanout")
        if fanout is None:  # no Ray in this process: the consumers run here
            context = ConsumerContext(pool, state.settings.model_dump(mode="json"))
            fanout = state.extras["local_fanout"] = FanOut(pool, load_consumers(state.settings.detection_consumers,
                                                                                 context))  # fmt: skip
        await fanout.deliver([batch])
    except Exception as exc:
        state.extras.pop("ingest_actor", None)
        logger.warning("fan-out of an HTTP batch failed (%s); the replay delivers it", exc.__class__.__name__)


@router.post(
    "/api/v1/ai/events",
    summary="Send the detections of one analysed frame",
    openapi_extra=json_body(AiIngest, "One analysed frame, at most 8 MiB."),
    responses=sends(IngestResult, description="What was stored.")
    | errors(400, 401, 403, 404, 409, e413="The body is over 8 MiB."),
)
async def ingest_events(
    request: Request,
    principal: Principal = require("ai:ingest"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> dict[str, Any]:
    """One analysed frame from an HTTP worker; idempotent per (camera, frame_id). The body (at most 8 MiB,
    1000 detections) is read here rather than by the framework so that its own limit holds. With a frame
    ticket the batch is bound to the caller's lease (401 bad or expired ticket, 403 task or camera disabled,
    409 body contradicts the ticket); without one (``HELDAR_INGEST_PROVENANCE`` not ``enforce``) a timestamp
    more than 60 s ahead or older than the detection retention is refused with 400."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge("request body over 8 MiB")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise PayloadTooLarge("request body over 8 MiB")
    try:
        body = AiIngest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    if len(body.detections) > 1000:
        raise BadRequest("at most 1000 detections per batch")
    if not principal.sees_camera(body.camera_id):
        raise Forbidden("camera outside this credential's scope")
    ticketed = body.frame_ticket is not None
    task_id = None
    if ticketed:
        task_id, captured_ms, frame_id = await _verify(state, pool, principal, body)
        captured_at = datetime.fromtimestamp(captured_ms / 1000, UTC)
    else:
        if state.settings.ingest_provenance == "enforce":
            raise Unauthorized("frame_ticket_required")
        frame_id = body.frame_id  # type: ignore[assignment]
        now = datetime.now(UTC)
        if body.timestamp is None:
            captured_at = now
        else:
            try:
                captured_at = datetime.fromisoformat(body.timestamp.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest("timestamp is not RFC 3339") from None
            if captured_at.tzinfo is None:
                raise BadRequest("timestamp needs a time zone")
        camera_horizon_s = await store.ingest_horizon_s(pool, body.camera_id)
        if camera_horizon_s is None:
            raise NotFound(f"camera {body.camera_id[:64]!r} not found")
        # detections are kept HELDAR_DETECTION_RETENTION_HOURS: an older frame would be pruned at once
        retention_h = getattr(state.settings, "detection_retention_hours", None)
        check_captured_at(captured_at, now, float(retention_h) * 3600.0 if retention_h else camera_horizon_s)
        await _warn_unleased(state, pool, principal, body.camera_id)
    detections = [Detection(d.label, d.confidence, check_bbox(d.bbox), d.track_id, d.attributes)
                  for d in body.detections]  # fmt: skip
    if body.event is not None:
        check_event_type(body.event.event_type)
    batch = prepare_worker_batch(camera_id=body.camera_id, task_type=body.task_type, frame_id=frame_id,
                                 captured_at=captured_at, detections=detections, key_id=principal.id,
                                 task_id=task_id, worker_id=body.worker_id)  # fmt: skip
    produced_by = f"{principal.kind}:{principal.id}"
    try:
        result = await store.ingest_one(pool, store.IngestItem(batch, "worker", produced_by))
    except asyncpg.ForeignKeyViolationError:
        raise NotFound(f"camera {body.camera_id[:64]!r} not found") from None
    if not result.inserted[0]:
        return {"detections_ingested": 0, "duplicate": True, "ticketed": ticketed}
    if body.event is not None:
        severity = "warning" if body.event.severity == "critical" else body.event.severity
        await insert_event(pool, body.event.event_type, camera_id=body.camera_id, severity=severity,
                           payload={**body.event.payload, "_prov": produced_by}, timestamp=captured_at)  # fmt: skip
    await _fan_out(state, pool, batch)
    return {"detections_ingested": result.rows, "ticketed": ticketed}


async def _warn_unleased(state: AppState, pool: asyncpg.Pool, principal: Principal, camera_id: str) -> None:
    if state.settings.ingest_provenance != "warn":
        return
    seen: dict[str, float] = state.extras.setdefault("ingest_unleased_seen", {})
    now = time.monotonic()
    if now - seen.get(principal.id, -UNLEASED_WARN_EVERY_S) < UNLEASED_WARN_EVERY_S:
        return
    seen[principal.id] = now
    logger.warning("ticketless detection batch from %s (HELDAR_INGEST_PROVENANCE=warn)", principal.id)
    await insert_event(pool, "ingest_unleased", camera_id=camera_id, severity="warning",
                       payload={"principal": principal.id})  # fmt: skip


@router.get(
    "/api/v1/cameras/{camera_id}/detections",
    summary="List stored detections",
    responses=sends(list[StoredDetection], description="Detections, newest first.") | errors(400),
)
async def list_detections(
    camera_id: str,
    from_: datetime | None = Query(None, alias="from", description="Only from this time (RFC 3339 with a zone)."),
    to: datetime | None = Query(None, description="Only before this time (RFC 3339 with a zone)."),
    label: str | None = Query(None, max_length=128, description="Only this label."),
    limit: int = Query(500, description="At most this many (clamped to 1-5000)."),
    _: Principal = require_camera("camera:read"),  # upstream: events:read, which camera-scoped keys cannot hold
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[dict[str, Any]]:
    """Stored detections, newest first; ``limit`` clamped to 1-5000."""
    await camera_store.ensure_camera(pool, camera_id)
    for value in (from_, to):
        if value is not None and value.tzinfo is None:
            raise BadRequest("from/to need a time zone")
    rows = await store.list_detections(pool, camera_id, start=from_, end=to, label=label,
                                       limit=max(1, min(limit, 5000)))  # fmt: skip
    for row in rows:
        row["bbox"] = list(row["bbox"]) if row["bbox"] is not None else None
    return rows


# --- metrics --------------------------------------------------------------------------------------
def perception_metrics_source(state: AppState) -> Any:
    """The ``metric_sources`` entry: sampler, detector and ingest actor stats plus DB counts."""

    async def collect() -> bytes:
        db_stats: dict[str, int] | None = None
        units: list[store.SamplerUnit] = []
        if state.pool is not None:
            try:
                async with asyncio.timeout(2.0):
                    db_stats = await store.detection_stats(state.pool)
                    units = await store.sampler_units(state.pool)
            except Exception as exc:
                logger.warning("perception metrics: database unavailable (%s)", exc.__class__.__name__)
        samplers: list[dict[str, Any]] = []
        detectors: list[dict[str, Any]] = []
        ingest: dict[str, Any] | None = None
        if _ray_ready():
            namespace = state.settings.ray_namespace
            found = await asyncio.gather(*(_sampler_stats(namespace, *u.key) for u in units))
            samplers = [s for s in found if s]
            from actors.detector import get_detectors
            from actors.ingest import get_ingest

            async def ask(handle: Any) -> Any:
                try:
                    return await asyncio.wait_for(handle.stats.remote(), 2.0)
                except Exception:
                    return None

            handles = get_detectors(namespace, state.settings.ai_detector_workers)
            detectors = [d for d in await asyncio.gather(*(ask(h) for h in handles)) if d]
            ingest_handle = get_ingest(namespace)
            ingest = await ask(ingest_handle) if ingest_handle is not None else None
        return perception_metrics.render(samplers, detectors, ingest, db_stats)

    return collect
