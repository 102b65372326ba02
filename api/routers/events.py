"""The kernel event log: ``/api/v1/events`` (newest first), ``/events/types``, and ``/events/stream``
(server-sent events fed by PostgreSQL LISTEN/NOTIFY, resumable with ``Last-Event-ID``).

Camera-scoped principals see only their cameras' events; rows without a camera are hidden from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import AppState, app_state, get_pool, require
from api.openapi import errors
from heldar.aio import wait_set
from heldar.auth.capabilities import Principal
from heldar.errors import HeldarError, TooManyRequests, Unavailable
from heldar.events.broadcast import EventBroadcaster, Subscription
from heldar.events.shared_reads import SharedEventRows
from heldar.events.sse import parse_last_event_id, sse_comment, sse_message
from heldar.events.taxonomy import EVENT_TYPES
from heldar.store import event_reads
from heldar.store.event_reads import EventFilter

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/events", tags=["events"])


class NotAcceptable(HeldarError):
    status = 406


DEFAULT_LIMIT = 200
MAX_LIMIT = 2000
CATCH_UP_PAGE = 500
RETRY_MS = 2000
SHUTDOWN_REASON = "server shutting down; reconnect with Last-Event-ID"
Severity = Literal["info", "warning", "critical"]


class Event(BaseModel):
    """One entry of the event log."""

    id: str = Field(description="The event's id.")
    seq: int = Field(description="Its position in the log: the stream cursor (`Last-Event-ID`).")
    camera_id: str | None = Field(description="The camera it concerns; null for system events.")
    event_type: str = Field(description="Its type (see `GET /api/v1/events/types`).")
    severity: str = Field(description="`info`, `warning` or `critical`.")
    timestamp: datetime = Field(description="When it happened (UTC).")
    payload: dict[str, Any] = Field(description="Type-specific data.")
    created_at: datetime = Field(description="When it was stored (UTC).")


class EventType(BaseModel):
    """A built-in event type."""

    event_type: str = Field(description="The type's name.")
    description: str = Field(description="When it is raised.")


def _filter(
    principal: Principal,
    camera_id: str | None,
    event_type: str | None,
    severity: str | None,
    min_severity: str | None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> EventFilter:
    return EventFilter(camera_id=camera_id, event_type=event_type, severity=severity, min_severity=min_severity,
                       start=start, end=end, camera_scope=principal.camera_scope)  # fmt: skip


@router.get("", response_model=list[Event], summary="List events")
async def list_events(
    camera_id: str | None = Query(None, max_length=64, description="Only this camera's events."),
    event_type: str | None = Query(None, max_length=128, description="Only events of this type."),
    severity: Severity | None = Query(None, description="Only events of exactly this severity."),
    min_severity: Severity | None = Query(None, description="Only events of this severity or worse."),
    start: datetime | None = Query(None, alias="from", description="Only from this time (RFC 3339)."),
    end: datetime | None = Query(None, alias="to", description="Only before this time (RFC 3339)."),
    limit: int = Query(DEFAULT_LIMIT, description="At most this many (clamped to 1-2000)."),
    principal: Principal = require("events:read"),
    pool: asyncpg.Pool = Depends(get_pool),
) -> list[Event]:
    """Newest first; ``limit`` clamped to 1-2000. Each row's ``seq`` is its stream cursor."""
    f = _filter(principal, camera_id, event_type, severity, min_severity, start, end)
    rows = await event_reads.list_events(pool, f, limit=max(1, min(limit, MAX_LIMIT)))
    return [Event(**r) for r in rows]


@router.get("/types", response_model=list[EventType], summary="List the built-in event types")
async def event_types(_: Principal = require("events:read")) -> list[EventType]:
    """The built-in taxonomy (descriptive, not exhaustive: apps and workers add their own types)."""
    return [EventType(event_type=t, description=d) for t, d in EVENT_TYPES]


@router.get(
    "/stream",
    response_class=StreamingResponse,
    summary="Stream new events (Server-Sent Events)",
    responses={
        200: {
            "description": (
                "An endless `text/event-stream`: per event `id: <seq>`, `event: <event_type>` and `data:` with the "
                "event as JSON (the `Event` schema); a comment line every 15 s keeps it open."
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
    | errors(
        e406="The request does not accept `text/event-stream`.",
        e429="Too many open streams (`HELDAR_EVENTS_STREAM_MAX`, `..._PER_PRINCIPAL`).",
    ),
)
async def stream_events(
    request: Request,
    camera_id: str | None = Query(None, max_length=64, description="Only this camera's events."),
    event_type: str | None = Query(None, max_length=128, description="Only events of this type."),
    severity: Severity | None = Query(None, description="Only events of exactly this severity."),
    min_severity: Severity | None = Query(None, description="Only events of this severity or worse."),
    last_event_id_query: str | None = Query(
        None, alias="last_event_id", max_length=32, description="Resume after this cursor (as `Last-Event-ID`)."
    ),
    last_event_id: str | None = Header(None, max_length=32, description="Resume after this cursor (`seq`)."),
    principal: Principal = require("events:read"),
    state: AppState = Depends(app_state),
    pool: asyncpg.Pool = Depends(get_pool),
) -> StreamingResponse:
    """``text/event-stream`` of new events, each with ``id: <seq>`` and ``event: <event_type>``; the request
    must accept ``text/event-stream`` (406 otherwise, so a plain client never hangs on an endless body). With a
    ``Last-Event-ID`` header (or ``?last_event_id=``) the rows after that cursor come first. Delivery is
    at-least-once: a client de-duplicates by id."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise NotAcceptable("the event stream needs Accept: text/event-stream (as EventSource sends)")
    broadcaster: EventBroadcaster | None = state.extras.get("event_broadcaster")
    if broadcaster is None:
        raise Unavailable("the event stream is not running in this API process")
    f = _filter(principal, camera_id, event_type, severity, min_severity)
    resume = parse_last_event_id(last_event_id if last_event_id is not None else last_event_id_query)
    release = _take_stream_slot(state, principal)
    sub = broadcaster.subscribe()  # before reading the cursor: nothing written after it can be missed

    def close() -> None:
        broadcaster.unsubscribe(sub)
        release()

    try:
        cursor = resume if resume is not None else await event_reads.max_seq(pool)
    except BaseException:
        close()
        raise
    generator = _stream(request, state, pool, broadcaster, sub, f, cursor, resume is not None)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return _ClosingStream(generator, on_close=close, media_type="text/event-stream", headers=headers)


class _ClosingStream(StreamingResponse):
    """A streaming response that releases its subscription and stream slot however it ends, even when the
    client is gone before the body generator ever started (its ``finally`` would never run then)."""

    def __init__(self, content: AsyncIterator[str], *, on_close: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _take_stream_slot(state: AppState, principal: Principal) -> Any:
    """Count one open stream in total and for ``principal``; 429 past ``HELDAR_EVENTS_STREAM_MAX`` or
    ``HELDAR_EVENTS_STREAM_MAX_PER_PRINCIPAL``. Returns the (idempotent) release."""
    open_streams: dict[str, int] = state.extras.setdefault("event_streams_open", {})
    total = sum(open_streams.values())
    mine = open_streams.get(principal.id, 0)
    if total >= state.settings.events_stream_max:
        raise TooManyRequests("too many open event streams on this server", 5.0)
    if mine >= state.settings.events_stream_max_per_principal:
        raise TooManyRequests("too many open event streams for this credential", 5.0)
    open_streams[principal.id] = mine + 1
    released = False

    def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        left = open_streams.get(principal.id, 1) - 1
        if left > 0:
            open_streams[principal.id] = left
        else:
            open_streams.pop(principal.id, None)

    return release


def _shared_rows(state: AppState, pool: asyncpg.Pool) -> SharedEventRows:
    shared: SharedEventRows | None = state.extras.get("event_shared_rows")
    if shared is None:
        shared = SharedEventRows(lambda seqs: event_reads.events_by_seq(pool, seqs, EventFilter()))
        state.extras["event_shared_rows"] = shared
    return shared


async def _stream(
    request: Request,
    state: AppState,
    pool: asyncpg.Pool,
    broadcaster: EventBroadcaster,
    sub: Subscription,
    f: EventFilter,
    cursor: int,
    catch_up: bool,
) -> AsyncIterator[str]:
    settings = state.settings
    sent: deque[int] = deque(maxlen=4096)  # recently sent seqs: a notification and a catch-up may overlap
    sent_set: set[int] = set()
    loop = asyncio.get_running_loop()
    recheck_at = loop.time() + settings.events_stream_recheck_s

    def fresh(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            if row["seq"] in sent_set:
                continue
            if len(sent) == sent.maxlen:
                sent_set.discard(sent[0])
            sent.append(row["seq"])
            sent_set.add(row["seq"])
            out.append(row)
        return out

    def frame(row: dict[str, Any]) -> str:
        body = Event(**row).model_dump(mode="json")
        return sse_message(body, event_id=row["seq"], event=row["event_type"])

    try:
        yield sse_message({"cursor": cursor}, event="ready", retry_ms=RETRY_MS)
        if catch_up:
            async for row, after in _rows_after(pool, cursor, f):
                if sub.closed:
                    break
                cursor = after
                if fresh([row]):
                    yield frame(row)
        while True:
            if not await wait_set(sub.wake, settings.events_stream_keepalive_s):
                yield sse_comment("keep-alive")
            sub.wake.clear()
            if sub.closed:
                yield sse_message({"reason": SHUTDOWN_REASON}, event="end")
                return
            if loop.time() >= recheck_at:
                recheck_at = loop.time() + settings.events_stream_recheck_s
                if not await _still_allowed(request, state):
                    yield sse_message({"reason": "credential no longer valid"}, event="end")
                    return
            seqs = []
            while not sub.queue.empty():
                seqs.append(sub.queue.get_nowait())
            if sub.lagged:
                sub.lagged = False
                async for row, after in _rows_after(pool, cursor, f):
                    cursor = after
                    if fresh([row]):
                        yield frame(row)
            elif seqs:
                for row in fresh(await _shared_rows(state, pool).rows(seqs, f)):
                    yield frame(row)
                    cursor = max(cursor, row["seq"])
    finally:
        broadcaster.unsubscribe(sub)


async def _rows_after(pool: asyncpg.Pool, cursor: int, f: EventFilter) -> AsyncIterator[tuple[dict[str, Any], int]]:
    """Every matching row past ``cursor`` page by page, each with the cursor after it."""
    while True:
        rows = await event_reads.events_after(pool, cursor, f, limit=CATCH_UP_PAGE)
        for row in rows:
            cursor = max(cursor, row["seq"])
            yield row, cursor
        if len(rows) < CATCH_UP_PAGE:
            return


async def _still_allowed(request: Request, state: AppState) -> bool:
    """Re-resolve the credential of a long-lived stream: a revoked key or ended session stops it."""
    if not state.settings.auth_enabled or state.authenticator is None:
        return True
    try:
        principal = await state.authenticator(request)
    except Exception:
        logger.warning("events: credential re-check failed; keeping the stream until the next check")
        return True
    return principal is not None and principal.can("events:read")


def install(state: AppState, database_url: str) -> None:
    """Start this process's LISTEN connection with the app and stop it with the app."""

    async def start(st: AppState) -> None:
        broadcaster = EventBroadcaster(database_url)
        st.extras["event_broadcaster"] = broadcaster
        await broadcaster.start()

    async def stop(st: AppState) -> None:
        broadcaster = st.extras.pop("event_broadcaster", None)
        if broadcaster is not None:
            await broadcaster.stop()

    def stopping(st: AppState) -> None:
        """The server stops accepting requests: end open streams now, not after the grace period."""
        broadcaster = st.extras.get("event_broadcaster")
        if broadcaster is not None:
            broadcaster.close_subscribers()

    state.extras.setdefault("startup_hooks", []).append(start)
    state.extras.setdefault("stopping_hooks", []).append(stopping)
    state.extras.setdefault("shutdown_hooks", []).append(stop)
