"""AI tasks per camera: ``/api/v1/cameras/{camera_id}/ai-tasks`` and ``/api/v1/ai-tasks/{task_id}``.

Create is idempotent per (camera, task_type, stream_profile): an existing match answers 200 with it.
Every change is audited and tells the supervisor, which rebalances the samplers under the fps budget.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, audit, get_pool, require, require_camera
from heldar.auth.capabilities import Principal
from heldar.errors import BadRequest, Forbidden
from heldar.perception.analyzers import TaskConfigError, validate_task_config
from heldar.store import cameras as camera_store
from heldar.store import perception as store

logger = logging.getLogger(__name__)
router = APIRouter(tags=["ai-tasks"])

TASK_TYPE = r"^[a-z0-9_]{1,64}$"


class AiTask(BaseModel):
    id: str = Field(description="The task's id (`tsk_...`).")
    camera_id: str = Field(description="The camera analysed.")
    task_type: str = Field(description="The analyzer (`person`, `motion`, or a plugin's name).")
    stream_profile: Literal["sub", "main"] = Field(description="Which of the camera's streams is sampled.")
    fps: float = Field(description="Frames per second asked for.")
    width: int = Field(description="Frame width analysed, pixels.")
    config: dict[str, Any] = Field(description="The analyzer's own settings.")
    enabled: bool = Field(description="Whether it runs.")
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it was last changed (UTC).")


class AiTaskCreate(BaseModel):
    model_config = {"extra": "forbid"}

    task_type: str = Field(pattern=TASK_TYPE, description="The analyzer (`person`, `motion`, or a plugin's name).")
    stream_profile: Literal["sub", "main"] = Field("sub", description="Which of the camera's streams to sample.")
    fps: float | None = Field(
        None, ge=0.1, le=30, description="Frames per second (0.1-30); default `HELDAR_DEFAULT_AI_FPS`."
    )
    width: int | None = Field(
        None, ge=160, le=3840, description="Frame width, pixels (160-3840); default `HELDAR_DEFAULT_AI_WIDTH`."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="The analyzer's own settings.")
    enabled: bool = Field(True, description="Whether it runs.")


class AiTaskPatch(BaseModel):
    model_config = {"extra": "forbid"}

    stream_profile: Literal["sub", "main"] | None = Field(None, description="Which of the camera's streams to sample.")
    fps: float | None = Field(None, ge=0.1, le=30, description="Frames per second (0.1-30).")
    width: int | None = Field(None, ge=160, le=3840, description="Frame width, pixels (160-3840).")
    config: dict[str, Any] | None = Field(None, description="The analyzer's own settings.")
    enabled: bool | None = Field(None, description="Whether it runs.")


async def _owned_task(pool: asyncpg.Pool, principal: Principal, task_id: str) -> dict[str, Any]:
    task = await store.get_task(pool, task_id[:80])
    if not principal.sees_camera(task["camera_id"]):
        raise Forbidden("camera outside this credential's scope")
    return task


def _changed(state: AppState, camera_id: str) -> None:
    if state.supervisor is not None:
        state.supervisor.notify(camera_id)


async def _audit(state: AppState, principal: Principal, action: str, task: dict[str, Any]) -> None:
    await audit(
        state,
        principal,
        action,
        "ai_task",
        task["id"],
        {"camera_id": task["camera_id"], "task_type": task["task_type"]},
    )


def _check_config(task_type: str, config: dict[str, Any] | None) -> None:
    try:
        validate_task_config(task_type, config)
    except TaskConfigError as exc:
        raise BadRequest(str(exc)) from None


@router.get("/api/v1/cameras/{camera_id}/ai-tasks", response_model=list[AiTask], summary="List a camera's AI tasks")
async def list_ai_tasks(
    camera_id: str, _: Principal = require_camera("ai:tasks"), pool: asyncpg.Pool = Depends(get_pool)
) -> list[AiTask]:
    """The camera's AI tasks, enabled or not."""
    await camera_store.ensure_camera(pool, camera_id)
    return [AiTask(**r) for r in await store.list_tasks(pool, camera_id)]


@router.post(
    "/api/v1/cameras/{camera_id}/ai-tasks", response_model=AiTask, status_code=201, summary="Create an AI task"
)
async def create_ai_task(
    camera_id: str,
    body: AiTaskCreate,
    response: Response,
    principal: Principal = require_camera("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> AiTask:
    """201 with the new task, or 200 with the existing one for the same (camera, task_type, profile)."""
    await camera_store.ensure_camera(pool, camera_id)
    _check_config(body.task_type, body.config)
    values = body.model_dump()
    values["fps"] = body.fps if body.fps is not None else state.settings.ai_default_fps
    values["width"] = body.width if body.width is not None else state.settings.ai_default_width
    row, created = await store.create_task(pool, camera_id, values)
    if created:
        await _audit(state, principal, "ai_task_create", row)
        _changed(state, camera_id)
    else:
        response.status_code = 200
    return AiTask(**row)


@router.patch("/api/v1/ai-tasks/{task_id}", response_model=AiTask, summary="Change an AI task")
async def patch_ai_task(
    task_id: str,
    body: AiTaskPatch,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> AiTask:
    """Change a task's stream, rate, width, settings or enabled state; the camera's samplers are re-planned. Audited."""
    task = await _owned_task(pool, principal, task_id)
    changes = {k: getattr(body, k) for k in body.model_fields_set if getattr(body, k) is not None}
    if "config" in changes:
        _check_config(task["task_type"], changes["config"])
    row = await store.update_task(pool, task_id, changes)
    await _audit(state, principal, "ai_task_update", row)
    _changed(state, row["camera_id"])
    return AiTask(**row)


@router.delete("/api/v1/ai-tasks/{task_id}", status_code=204, summary="Delete an AI task")
async def delete_ai_task(
    task_id: str,
    principal: Principal = require("registry:manage"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """Remove a task; the camera's samplers are re-planned without it. Audited."""
    await _owned_task(pool, principal, task_id)
    row = await store.delete_task(pool, task_id)
    await _audit(state, principal, "ai_task_delete", row)
    _changed(state, row["camera_id"])
    return Response(status_code=204)
