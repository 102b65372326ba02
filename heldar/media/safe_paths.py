"""Which file under the recordings tree may a media request read? Pure checks, no HTTP.

A request names ``<camera_id>/<file_name>``; the answer is the one regular file
``<recordings_root>/<camera_id>/<file_name>`` (or ``<camera_id>/<day>/<file_name>``, a UTC day folder) or a
refusal. Refused, before the disk is touched:
a camera id that is not a slug, an empty or over-long name, ``.``/``..``, a leading dot, any ``/``,
``\\``, ``%`` (percent-encoding that survived the router's one decoding: ``%2e%2e%2f``), NUL or other
control characters, and names without an allowed suffix (``.mp4``). Then, on disk, the file's
real path (every symlink resolved) must be exactly ``realpath(root)/<camera_id>/<file_name>``: a
symlinked file or a symlinked camera directory is refused wherever it points (outside the tree, or
into another camera's directory, which would step around camera scope). Only the root itself may be
a symlink.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from heldar.ids import CAMERA_ID_RE

logger = logging.getLogger(__name__)

SEGMENT_SUFFIXES: tuple[str, ...] = (".mp4",)
MAX_NAME_LEN = 255
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


class UnsafePath(Exception):
    """The request names something that must not be served (a 403: it is never looked up)."""


class MissingFile(Exception):
    """A well-formed name with no regular file behind it (a 404)."""


def check_media_name(camera_id: str, file_name: str, suffixes: tuple[str, ...] = SEGMENT_SUFFIXES) -> None:
    """Raise :class:`UnsafePath` unless ``camera_id``/``file_name`` are plain names of a media file."""
    if not CAMERA_ID_RE.match(camera_id):
        raise UnsafePath("camera id is not a valid slug")
    if not file_name or len(file_name) > MAX_NAME_LEN:
        raise UnsafePath("file name is empty or too long")
    if any(ch in file_name for ch in ("/", "\\", "%", "\x00")) or any(
        ord(ch) < 32 or ord(ch) == 127 for ch in file_name
    ):
        raise UnsafePath("file name contains a path separator, escape or control character")
    if file_name in (".", "..") or ".." in file_name or not _NAME_RE.match(file_name):
        raise UnsafePath("file name is not a plain file name")
    if not file_name.lower().endswith(suffixes):
        raise UnsafePath(f"only {', '.join(suffixes)} files are served")


def resolve_media_file(
    root: Path | str,
    camera_id: str,
    file_name: str,
    suffixes: tuple[str, ...] = SEGMENT_SUFFIXES,
    day: str | None = None,
) -> Path:
    """The real path of ``root/camera_id/file_name`` when it is safe to serve.

    Raises :class:`UnsafePath` for names that are not plain (see module doc) or that resolve anywhere
    but their own place in the tree (symlinks), and :class:`MissingFile` when nothing is there or it
    is not a regular file.
    """
    check_media_name(camera_id, file_name, suffixes)
    if day is not None and not _DAY_RE.fullmatch(day):
        raise UnsafePath("day folder is not YYYY-MM-DD")
    try:
        real_root = Path(os.path.realpath(root, strict=True))
    except OSError as exc:
        raise MissingFile("recordings root does not exist") from exc
    expected = real_root / camera_id / day / file_name if day else real_root / camera_id / file_name
    try:
        real = Path(os.path.realpath(expected, strict=True))
    except OSError as exc:
        raise MissingFile("no such file") from exc
    if real != expected:
        logger.warning("media request %s/%s resolves elsewhere; refused", camera_id, file_name)
        raise UnsafePath("path resolves outside its camera directory")
    try:
        mode = os.lstat(real).st_mode
    except OSError as exc:
        raise MissingFile("no such file") from exc
    if not stat.S_ISREG(mode):
        raise MissingFile("not a regular file")
    return real
