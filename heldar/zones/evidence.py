"""Evidence frames: the JPEG of the frame behind a zone ``enter``, ``dwell`` or crossing.

The zone engine asks a *frame source* (``camera_id -> JPEG bytes or None``; the ingest actor's asks the
camera's sampler for its latest frame, sub profile first) just before it writes such an event, stores the
JPEG as ``<data_dir>/evidence/<camera_id>/<name>.jpg`` and puts ``evidence_url``
(``/media/evidence/<camera_id>/<name>.jpg``) into the zone event and its ``zone_<type>`` event payload.
Names are random (``ev_<hex>.jpg``); :func:`resolve_evidence` is the only way back from a URL to a file.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from heldar.ids import is_camera_id

FrameSource = Callable[[str], Awaitable[bytes | None]]
EVIDENCE_TYPES = frozenset({"enter", "dwell", "cross_ab", "cross_ba"})
NAME_RE = re.compile(r"^ev_[0-9a-f]{24}\.jpg$")
URL_PREFIX = "/media/evidence"


class EvidenceError(ValueError):
    pass


def evidence_root(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "evidence"


def store_evidence(root: Path, camera_id: str, jpeg: bytes) -> str:
    """Write ``jpeg`` for ``camera_id`` (atomically: temp file, then rename); returns its URL."""
    if not is_camera_id(camera_id):
        raise EvidenceError("not a camera id")
    folder = root / camera_id
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ev_{secrets.token_hex(12)}.jpg"
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(jpeg)
    os.replace(tmp, folder / name)
    return f"{URL_PREFIX}/{camera_id}/{name}"


def resolve_evidence(root: Path, camera_id: str, name: str) -> Path:
    """The file of ``/media/evidence/<camera_id>/<name>``; :class:`EvidenceError` for anything but a plain
    evidence name of a camera, or a file that is missing or not a regular file."""
    if not is_camera_id(camera_id) or not NAME_RE.match(name):
        raise EvidenceError("not an evidence file name")
    path = root / camera_id / name
    if path.is_symlink() or not path.is_file():
        raise EvidenceError("no such evidence file")
    return path


def prune_evidence(root: Path, older_than: datetime) -> int:
    """Delete evidence files written before ``older_than`` (the zone events that point at them go at the same
    detection-retention horizon); returns how many went. Only plain evidence names are touched."""
    if not root.is_dir():
        return 0
    horizon = older_than.timestamp()
    removed = 0
    for folder in root.iterdir():
        if not folder.is_dir() or folder.is_symlink() or not is_camera_id(folder.name):
            continue
        for entry in os.scandir(folder):
            try:
                if (
                    NAME_RE.match(entry.name)
                    and entry.is_file(follow_symlinks=False)
                    and (entry.stat(follow_symlinks=False).st_mtime < horizon)
                ):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed
