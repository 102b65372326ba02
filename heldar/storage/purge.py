"""Removing a deleted camera's footage from disk: rename its folder to a trash name (atomic), then delete it.

After the rename nothing can find the old files under the camera's id any more, so a camera created again
with the same id starts with an empty folder even if the delete of the trash folder is slow or fails (the
retention sweeper removes trash folders left behind).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

TRASH_PREFIX = ".trash-"


def trash_name(camera_id: str) -> str:
    return f"{TRASH_PREFIX}{camera_id}-{secrets.token_hex(4)}"


def purge_camera_dir(recordings_root: Path, camera_id: str) -> dict[str, int]:
    """Move ``<root>/<camera_id>`` aside and delete it; ``{"files", "bytes"}`` removed (0 when absent)."""
    folder = recordings_root / camera_id
    trash = recordings_root / trash_name(camera_id)
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return {"files": 0, "bytes": 0}
    files = size = 0
    for base, _, names in os.walk(trash):
        for name in names:
            files += 1
            try:
                size += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    shutil.rmtree(trash, ignore_errors=True)
    if trash.exists():
        logger.warning("could not fully remove %s; the retention sweeper will retry", trash.name)
    return {"files": files, "bytes": size}


def remove_trash(recordings_root: Path) -> int:
    """Delete trash folders a crashed purge left behind; how many went."""
    removed = 0
    try:
        entries = [e for e in os.scandir(recordings_root) if e.name.startswith(TRASH_PREFIX) and e.is_dir()]
    except FileNotFoundError:
        return 0
    for entry in entries:
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += not os.path.exists(entry.path)
    return removed
