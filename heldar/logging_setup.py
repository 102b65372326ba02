"""The one logging set-up of every heldar process: the CLI, the API, the worker and every Ray actor.

``HELDAR_LOG_FORMAT=text`` (default) writes ``time level logger: message [camera=cam1]``; ``json`` writes one
JSON object a line (``ts``, ``level``, ``logger``, ``msg``, then the fields: ``camera_id``, anything passed
with ``extra=``, ``exc`` with the traceback). The camera id is a field, not only part of the text: a camera
actor sets it once for its process (``setup_logging(..., camera_id=...)``), code can also pass
``extra={"camera_id": ...}`` or run under ``log_context(camera_id=...)``.

``HELDAR_ACCESS_LOG`` turns on uvicorn's access log through the same handler (in JSON with ``client``,
``method``, ``path`` and ``status`` fields).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers too chatty at INFO for an operator.
QUIET_LOGGERS = {"pgserver": logging.WARNING, "httpx": logging.WARNING, "httpcore": logging.WARNING,
                 "uvicorn.error": logging.WARNING}  # fmt: skip

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("heldar_log_context", default=None)
_process_fields: dict[str, Any] = {}  # fields of this whole process (a Ray actor: its camera)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class _HeldarHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a second set-up replaces it instead of adding one."""


class ContextFilter(logging.Filter):
    """Puts the process's and the current context's fields (``camera_id``, ...) on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in {**_process_fields, **(_context.get() or {})}.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of ``record``: whatever is not a standard LogRecord attribute."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    # uvicorn.access: '%s - "%s %s HTTP/%s" %d' with (client, method, path, http version, status)
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, _, status = record.args
        return {"client": client, "method": method, "path": path, "status": status}
    return {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update(_access_fields(record))
        body.update(record_fields(record))
        if record.exc_info:
            body["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(body, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = record_fields(record)
        if not fields:
            return text
        suffix = " ".join(f"{'camera' if k == 'camera_id' else k}={v}" for k, v in sorted(fields.items()))
        head, sep, rest = text.partition("\n")  # keep a traceback below the tagged first line
        return f"{head} [{suffix}]{sep}{rest}"


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    *,
    access_log: bool = False,
    camera_id: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger of this process (idempotent: a second call replaces the first's handler).

    Handlers others put on the root logger (Ray's, a test runner's) are kept; only this module's is replaced.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _HeldarHandler)]:
        root.removeHandler(handler)
    handler = _HeldarHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # A uvicorn run with its own log config (another server in this process, earlier) leaves handlers
        # here that print past this set-up: drop them, so every line goes through the one handler above.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.INFO if access_log else logging.WARNING)
    if camera_id is not None:
        _process_fields["camera_id"] = camera_id


def setup_actor_logging(
    settings: Mapping[str, Any] | None = None, *, level: str | None = None, camera_id: str | None = None
) -> None:
    """What an actor's constructor calls, one line: the settings dict it was given (``HELDAR_LOG_LEVEL``,
    ``HELDAR_LOG_FORMAT``) or just its ``level``, and its camera (if it has one) as a field of every line.

    What the settings do not say is read from this process's environment (a Ray worker inherits its node's),
    so a camera actor that is handed only its level still logs in the cluster's ``HELDAR_LOG_FORMAT``."""
    settings = settings or {}
    fmt = str(settings.get("log_format") or os.environ.get("HELDAR_LOG_FORMAT") or "text").strip().lower()
    setup_logging(
        str(level or settings.get("log_level") or os.environ.get("HELDAR_LOG_LEVEL") or "INFO").strip().upper(),
        fmt if fmt in LOG_FORMATS else "text",
        access_log=bool(settings.get("access_log", False)),
        camera_id=camera_id,
    )


def setup_from_settings(settings: Any) -> None:
    """The CLI and API's set-up from a ``Settings``."""
    setup_logging(settings.log_level, settings.log_format, access_log=settings.access_log)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Fields on every line logged inside the block (this task or thread only)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)
