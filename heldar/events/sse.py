"""Server-sent events framing (text/event-stream)."""

from __future__ import annotations

import json
from typing import Any


def sse_message(data: Any, *, event_id: str | int | None = None, event: str | None = None,
                retry_ms: int | None = None) -> str:  # fmt: skip
    """One SSE message: optional ``id``/``event``/``retry`` fields and JSON ``data`` (one line: JSON never
    needs a raw newline), terminated by a blank line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {_one_line(str(event_id))}")
    if event is not None:
        lines.append(f"event: {_one_line(event)}")
    if retry_ms is not None:
        lines.append(f"retry: {int(retry_ms)}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def sse_comment(text: str = "") -> str:
    """A comment line: ignored by clients, keeps proxies and idle timers from closing the stream."""
    return f": {_one_line(text)}\n\n"


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def parse_last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` header as a cursor; None when absent or not a non-negative integer."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 19:
        return None
    return int(value)
