"""Shared bits of the media routers: the window in a body, a hole in it, the per-process media-job slots."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.deps import AppState
from api.routers.recordings import parse_time
from heldar.errors import BadRequest, Invalid
from heldar.media.jobs import MediaJobSlots


class Window(BaseModel):
    from_: str = Field(alias="from", description="RFC 3339 with an offset")
    to: str = Field(description="RFC 3339 with an offset")

    model_config = ConfigDict(populate_by_name=True)


class FootageHole(BaseModel):
    """A hole in a clip's or playback session's window with no footage (a player jumps over it)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description="Start of the hole (UTC).")
    to: datetime = Field(description="End of the hole (UTC).")


def window(body: Window, max_seconds: float) -> tuple[datetime, datetime]:
    """``(from, to)`` as UTC; 400 for a bad time, ``to <= from`` or a window longer than ``max_seconds``."""
    try:
        start, end = parse_time(body.from_, "from"), parse_time(body.to, "to")
    except Invalid as exc:
        raise BadRequest(exc.message) from None
    assert start is not None and end is not None
    if end <= start:
        raise BadRequest("to must be after from")
    if (end - start).total_seconds() > max_seconds:
        raise BadRequest(f"window longer than {max_seconds:g} s")
    return start, end


def media_slots(state: AppState) -> MediaJobSlots:
    slots = state.extras.get("media_slots")
    if slots is None:
        slots = state.extras["media_slots"] = MediaJobSlots(state.settings.media_job_slots)
    return slots  # type: ignore[no-any-return]
