"""Segment file names that cannot collide.

ffmpeg's segment muxer with ``-strftime 1`` names files by wall clock to the second, so two
ffmpeg runs that start within the same second (a fast reconnect) would write the same name. Every
file heldar writes is therefore named::

    <UTC start %Y%m%dT%H%M%SZ>_<run>.mp4        e.g. 20260101T120000Z_mifq3k2a7x.mp4

where ``<run>`` is a token unique to one ffmpeg run (a literal in the strftime pattern) or, for
files written by the ANR back-fill, a token starting with ``anr``. The token grammar is
``[a-z0-9]{1,32}``. Anything else in a camera directory (``.part`` files, temp files, junk,
upstream-style ``%Y%m%d_%H%M%S.mp4`` names) is ignored by :func:`parse_segment_name`.

**Layout.** New segments go into one folder per UTC day: ``<camera>/<YYYY-MM-DD>/<name>``, the folder
taken from the same strftime expansion as the name, so a name alone says where its file lives
(:func:`segment_path`). ffmpeg's segment muxer does not create folders (``-strftime_mkdir`` exists only
for the HLS muxer in the bundled ffmpeg 9), so the recorder creates today's and tomorrow's folder
ahead (:func:`ensure_day_dirs`). Installs from before this layout keep flat files directly under
``<camera>/``; every reader looks in the day folder first, then flat. ``segments.file_name`` stays the
bare name and media URLs stay ``/media/recordings/<camera>/<name>``.

The child ffmpeg must run with ``TZ=UTC`` (see :func:`heldar.media.recorder_command.recorder_env`),
because the segment muxer expands the pattern with the local time.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".mp4"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
DAY_FORMAT = "%Y-%m-%d"
_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
BACKFILL_PREFIX = "anr"

_TOKEN_RE = re.compile(r"[a-z0-9]{1,32}")
_NAME_RE = re.compile(r"(\d{8}T\d{6}Z)_([a-z0-9]{1,32})\.mp4")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

_run_lock = threading.Lock()
_last_run_ms = 0


@dataclass(frozen=True, slots=True)
class SegmentName:
    """A parsed segment file name."""

    name: str
    start: datetime  # timezone-aware UTC, whole seconds
    run_id: str

    @property
    def is_backfill(self) -> bool:
        """True for files written by the ANR back-fill rather than the live recorder."""
        return self.run_id.startswith(BACKFILL_PREFIX)


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """A segment file found on disk."""

    path: Path
    start: datetime
    run_id: str
    size_bytes: int
    mtime: float  # POSIX seconds

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_backfill(self) -> bool:
        return self.run_id.startswith(BACKFILL_PREFIX)


def is_valid_token(token: str) -> bool:
    """Whether ``token`` may be used as the run part of a segment name."""
    return _TOKEN_RE.fullmatch(token) is not None


def _b36(value: int, width: int) -> str:
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_B36[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def new_run_id() -> str:
    """A fresh run token: 8 base36 chars of epoch milliseconds + 2 random base36 chars.

    Tokens from one process are strictly increasing (the millisecond part never repeats), so
    sorting by ``(start, name)`` orders two runs that began in the same second by run age. The
    random tail separates processes that start in the same millisecond. Never starts with
    ``anr`` (that prefix would need a timestamp from 1994).
    """
    global _last_run_ms
    with _run_lock:
        ms = max(time.time_ns() // 1_000_000, _last_run_ms + 1)
        _last_run_ms = ms
    return _b36(ms, 8) + _b36(secrets.randbelow(36 * 36), 2)


def new_backfill_token() -> str:
    """A token for an ANR back-fill file: ``anr`` + 6 hex chars."""
    return BACKFILL_PREFIX + secrets.token_hex(3)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: segment times must be timezone-aware UTC")
    return value.astimezone(UTC)


def format_start(start: datetime) -> str:
    """``start`` as ``YYYYMMDDTHHMMSSZ`` in UTC, floored to the second (also the ANR URL format)."""
    return _as_utc(start).strftime(TIME_FORMAT)


def segment_pattern(camera_dir: Path | str, run_id: str) -> str:
    """The ``-strftime 1`` output pattern for one ffmpeg run.

    ``%`` in the directory is escaped as ``%%`` so strftime leaves it alone; the run id is a
    literal (its grammar has no ``%``).
    """
    if not is_valid_token(run_id):
        raise ValueError(f"invalid run id {run_id!r}: expected [a-z0-9]{{1,32}}")
    directory = os.fspath(camera_dir).replace("%", "%%")
    return os.path.join(directory, DAY_FORMAT, f"{TIME_FORMAT}_{run_id}{SEGMENT_SUFFIX}")


def day_dir_name(start: datetime) -> str:
    """The day folder (UTC) of a segment starting at ``start``."""
    return _as_utc(start).strftime(DAY_FORMAT)


def ensure_day_dirs(camera_dir: Path | str, now: datetime, days_ahead: int = 1) -> list[Path]:
    """Create the day folders ffmpeg will write into next (today and ``days_ahead`` more, UTC)."""
    made = []
    for offset in range(days_ahead + 1):
        path = Path(camera_dir) / day_dir_name(now + timedelta(days=offset))
        path.mkdir(parents=True, exist_ok=True)
        made.append(path)
    return made


def recent_days(now: datetime, days: int = 2) -> list[str]:
    """Day folder names of the last ``days`` UTC days, oldest first (today last)."""
    return [day_dir_name(now - timedelta(days=back)) for back in range(days - 1, -1, -1)]


def active_days(now: datetime, grace_s: float = 600.0) -> list[str]:
    """Today's day folder, and yesterday's during the first ``grace_s`` after midnight (UTC)."""
    midnight = _as_utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if (now - midnight).total_seconds() < grace_s:
        return [day_dir_name(now - timedelta(days=1)), day_dir_name(now)]
    return [day_dir_name(now)]


def segment_paths(camera_dir: Path | str, name: str) -> list[Path]:
    """Where the file ``name`` may live: its day folder first, then the flat (pre-layout) place."""
    directory = Path(camera_dir)
    parsed = parse_segment_name(name)
    flat = directory / name
    return [directory / day_dir_name(parsed.start) / name, flat] if parsed is not None else [flat]


def segment_path(camera_dir: Path | str, name: str) -> Path:
    """The existing file of segment ``name`` (day folder, else flat); the day-folder path when neither exists."""
    candidates = segment_paths(camera_dir, name)
    for path in candidates:
        if path.exists():
            return path
    return candidates[0]


def day_dirs(camera_dir: Path | str) -> list[str]:
    """Names of the camera's day folders, oldest first."""
    try:
        return sorted(e.name for e in os.scandir(camera_dir) if _DAY_RE.fullmatch(e.name) and e.is_dir())
    except FileNotFoundError:
        return []


def segment_name(start: datetime, token: str) -> str:
    """The file name for a segment starting at ``start`` (floored to the second) of run ``token``."""
    if not is_valid_token(token):
        raise ValueError(f"invalid token {token!r}: expected [a-z0-9]{{1,32}}")
    return f"{format_start(start)}_{token}{SEGMENT_SUFFIX}"


def backfill_name(start: datetime, token: str) -> str:
    """Name for an ANR back-fill file so the indexer places it at the gap start.

    ``token`` must start with ``anr`` (see :func:`new_backfill_token`); ``start`` is floored to the
    whole second, like the replay URL's ``starttime``.
    """
    if not token.startswith(BACKFILL_PREFIX):
        raise ValueError(f"back-fill token {token!r} must start with {BACKFILL_PREFIX!r}")
    return segment_name(start, token)


def parse_segment_name(name: str) -> SegmentName | None:
    """Parse a segment file name (a base name); ``None`` for anything that is not one."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    t = match.group(1)  # YYYYmmddTHHMMSSZ, digits checked by the pattern; datetime() is 5x cheaper than strptime
    try:
        start = datetime(int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[9:11]), int(t[11:13]), int(t[13:15]), tzinfo=UTC)
    except ValueError:  # e.g. month 13
        return None
    return SegmentName(name=name, start=start, run_id=match.group(2))


def segment_file_names(camera_dir: Path | str) -> dict[str, str]:
    """name → folder of every segment-named entry of a camera (flat and day folders), without a stat.

    The cheap listing for whole-camera passes (the sweeper's orphan and vanished-file diff): names are
    matched by pattern only, nothing is stat'ed.
    """
    directory = Path(camera_dir)
    out: dict[str, str] = {}
    for folder in [directory] + [directory / d for d in day_dirs(directory)]:
        path = os.fspath(folder)
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if _NAME_RE.fullmatch(entry.name):
                        out[entry.name] = path
        except FileNotFoundError:
            continue
    return out


def list_segment_files(
    camera_dir: Path | str, wanted: Callable[[str], bool] | None = None, days: Iterable[str] | None = None
) -> list[SegmentFile]:
    """Regular segment files of a camera (flat and in day folders), sorted by ``(start, name)``.

    ``wanted`` filters names before anything is parsed or stat'ed, so a poll that cares about a few files
    (the current run's, the unindexed ones) stays cheap in a folder of thousands of segments. ``days``
    limits the day folders read (names like ``2026-01-02``); ``None`` reads them all. The flat folder is
    always read (pre-layout footage and ANR back-fill files). A missing directory gives ``[]``; a file that
    vanishes while listing is skipped.
    """
    directory = Path(camera_dir)
    found: list[SegmentFile] = []
    folders = [directory] + [directory / d for d in (day_dirs(directory) if days is None else days)]
    for folder in folders:
        found.extend(_list_folder(folder, wanted))
    found.sort(key=lambda f: (f.start, f.name))
    return found


def _list_folder(directory: Path, wanted: Callable[[str], bool] | None) -> list[SegmentFile]:
    found: list[SegmentFile] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if wanted is not None and not wanted(entry.name):
            continue
        parsed = parse_segment_name(entry.name)
        if parsed is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            logger.debug("segment %s vanished while listing", entry.path)
            continue
        found.append(
            SegmentFile(
                path=directory / entry.name,
                start=parsed.start,
                run_id=parsed.run_id,
                size_bytes=st.st_size,
                mtime=st.st_mtime,
            )
        )
    return found


def segment_file_at(path: Path) -> SegmentFile | None:
    """The :class:`SegmentFile` of one known path (a file the kernel said was closed); ``None`` when the name is
    not a segment's or the file is gone."""
    parsed = parse_segment_name(path.name)
    if parsed is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return SegmentFile(path=path, start=parsed.start, run_id=parsed.run_id, size_bytes=st.st_size, mtime=st.st_mtime)


def closed_segments(
    files: list[SegmentFile],
    *,
    current_run_id: str | None,
    now: float,
    open_grace_s: float,
) -> list[SegmentFile]:
    """The files that ffmpeg will not write to any more (safe to index), in input order.

    ``current_run_id`` is the run of the ffmpeg that is recording now, or ``None`` when no
    recorder is running (then every file is closed). Only the newest file of the current run can
    be open; it still counts as closed once its mtime is older than ``now - open_grace_s`` (a
    stalled writer; the indexer's size repair catches a late write). Files of other runs and
    back-fill files (written as ``.part`` and renamed when complete) are always closed.
    """
    if current_run_id is None:
        return list(files)
    newest: SegmentFile | None = None
    for f in files:
        if f.run_id == current_run_id and (newest is None or (f.start, f.name) > (newest.start, newest.name)):
            newest = f
    if newest is None or now - newest.mtime > open_grace_s:
        return list(files)
    return [f for f in files if f is not newest]


def run_total_bytes(files: list[SegmentFile], run_id: str) -> int:
    """Bytes written so far by run ``run_id`` (the input for the progress watchdog)."""
    return sum(f.size_bytes for f in files if f.run_id == run_id)
