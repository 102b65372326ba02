"""Which ffmpeg binary heldar runs."""

from __future__ import annotations

import os
import shutil
from functools import cache


@cache
def ffmpeg_exe() -> str:
    """The ffmpeg to run: ``HELDAR_FFMPEG`` when set, else the static build shipped by imageio-ffmpeg."""
    configured = os.environ.get("HELDAR_FFMPEG", "").strip()
    if configured:
        found = shutil.which(configured) or configured
        if not os.path.isfile(found):
            raise FileNotFoundError(f"HELDAR_FFMPEG={configured!r} is not an executable file")
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
