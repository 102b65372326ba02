"""Which time zone a recording schedule is read in.

A schedule stores the IANA name of its zone, fixed when it is created: the ``timezone`` the client gave,
else ``HELDAR_SCHEDULE_TIMEZONE``, else the zone of the host the API runs on (``TZ``, then
``/etc/localtime``, then ``/etc/timezone``; UTC when none of them names a zone). Storing the name on the
row means the API, the supervisor and the recorders agree on what "08:00" means even when they run on
hosts set to different zones.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

logger = logging.getLogger(__name__)

_ZONEINFO_MARK = "zoneinfo/"


class UnknownZone(ValueError):
    """Not an IANA time zone name this host (or the ``tzdata`` package) knows."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The zone called ``name``; ``UnknownZone`` when there is none."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise UnknownZone(f"unknown time zone {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownZone(f"unknown time zone {name[:64]!r}; use an IANA name such as Europe/Berlin") from None


def check_zone_name(name: str) -> str:
    """``name`` when it is a known zone, else ``UnknownZone``."""
    zone(name)
    return name


def _name_from_path(path: str) -> str | None:
    if _ZONEINFO_MARK in path:
        return path.rsplit(_ZONEINFO_MARK, 1)[1]
    return None


def _known(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return check_zone_name(name)
    except UnknownZone:
        return None


def local_zone_name(environ: dict[str, str] | None = None, etc: Path = Path("/etc")) -> str:
    """The IANA name of this host's zone: ``TZ`` (a name, ``:name`` or a zoneinfo path), the target of
    ``/etc/localtime``, the content of ``/etc/timezone``; ``UTC`` when none names a known zone."""
    env = os.environ if environ is None else environ
    tz = env.get("TZ", "").strip().removeprefix(":")
    if tz:
        found = _known(tz) or _known(_name_from_path(tz))
        if found:
            return found
        logger.warning("TZ=%r is not an IANA zone name; schedules fall back to the host zone files", tz[:64])
    localtime = etc / "localtime"
    try:
        found = _known(_name_from_path(str(localtime.resolve()))) if localtime.is_symlink() else None
    except OSError:
        found = None
    if found:
        return found
    try:
        found = _known((etc / "timezone").read_text(encoding="utf-8").strip())
    except OSError:
        found = None
    return found or "UTC"


def default_zone_name(configured: str | None) -> str:
    """The zone a new schedule gets: ``HELDAR_SCHEDULE_TIMEZONE`` when set, else the host's zone."""
    return check_zone_name(configured) if configured else local_zone_name()
