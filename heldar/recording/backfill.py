"""ANR: fetch a recording gap's footage from the camera's own storage and place it in the timeline.

A fill downloads the replay window with ffmpeg stream copy into ``<name>.mp4.part``, bounded in time,
then renames it to a back-fill segment name at the gap start only when the result is playable and
covers the gap; the indexer then picks it up like any segment (``source = backfill``). It never
writes over a recorded file (back-fill names carry their own token) and never leaves a partial file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from heldar.camera_urls import mask_text
from heldar.media.binary import ffmpeg_exe
from heldar.media.ffmpeg_errors import classify_exit
from heldar.media.probe import probe_segment
from heldar.media.recorder_command import BackfillSpec, build_backfill_argv, recorder_env
from heldar.media.segment_names import backfill_name, format_start, new_backfill_token

logger = logging.getLogger(__name__)

# A fill counts as complete when it covers this share of the gap (replay starts at a keyframe).
MIN_COVERAGE = 0.8
MAX_JOB_S = 4 * 3600.0


def replay_url(template: str, start: datetime, end: datetime) -> str:
    """``{start}``/``{end}`` → UTC ``YYYYMMDDTHHMMSSZ`` (start floored, end rounded up to the second)."""
    floor_start = start.replace(microsecond=0)
    ceil_end = end.replace(microsecond=0) + (timedelta(seconds=1) if end.microsecond else timedelta())
    return template.replace("{start}", format_start(floor_start)).replace("{end}", format_start(ceil_end))


def job_bound_s(gap_seconds: float) -> float:
    return min(gap_seconds + 60.0, MAX_JOB_S)


@dataclass(frozen=True)
class FillResult:
    ok: bool
    error: str | None = None
    file_name: str | None = None
    seconds: float = 0.0


async def fill_gap(
    *,
    template: str,
    gap_start: datetime,
    gap_end: datetime,
    camera_dir: Path,
    rtsp_transport: str = "tcp",
    record_audio: bool = False,
    secrets_to_mask: tuple[str | None, ...] = (),
    timeout_s: float = 5.0,
) -> FillResult:
    """One fill attempt. Never raises for camera-side failures: they come back as ``FillResult.error``."""
    gap_seconds = (gap_end - gap_start).total_seconds()
    url = replay_url(template, gap_start, gap_end)
    target = camera_dir / backfill_name(gap_start, new_backfill_token())
    spec = BackfillSpec(
        input_url=url,
        output_path=target,
        duration_s=math.ceil(gap_seconds) + 1,
        rtsp_transport=rtsp_transport,  # type: ignore[arg-type]
        record_audio=record_audio,
        timeout_s=timeout_s,
    )
    await asyncio.to_thread(camera_dir.mkdir, parents=True, exist_ok=True)
    part = spec.part_path
    proc = await asyncio.create_subprocess_exec(
        *build_backfill_argv(spec, ffmpeg_exe()),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=recorder_env(),
    )
    bound = job_bound_s(gap_seconds)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), bound)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        _remove(part)
        return FillResult(False, f"timeout: replay took longer than {bound:.0f}s")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        _remove(part)
        raise
    tail = mask_text(stderr.decode("utf-8", errors="replace"), secrets_to_mask)
    probe = await asyncio.to_thread(probe_segment, part) if part.exists() and part.stat().st_size > 0 else None
    if probe is None:
        _remove(part)
        cause = classify_exit(tail, proc.returncode, killed_for_stall=False, produced_output=False)
        return FillResult(False, f"{cause.code}: {cause.message}")
    if probe.duration_s < MIN_COVERAGE * gap_seconds:
        _remove(part)
        return FillResult(False, f"incomplete: replay returned {probe.duration_s:.1f}s of a {gap_seconds:.1f}s gap")
    if target.exists():  # cannot happen with a fresh token; never overwrite footage all the same
        _remove(part)
        return FillResult(False, f"exists: {target.name} is already on disk")
    os.replace(part, target)
    return FillResult(True, None, target.name, min(probe.duration_s, gap_seconds))


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class GapSink:
    """What the gap filler needs from the cluster (the supervisor implements it)."""

    async def gaps_to_fill(self, camera_id: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def acquire_fill_slot(self, camera_id: str, ttl_s: float) -> str | None:
        raise NotImplementedError

    async def release_fill_slot(self, lease_id: str) -> None:
        raise NotImplementedError

    async def record_fill(self, camera_id: str, gap_id: str, started_at: datetime, result: FillResult) -> Any:
        raise NotImplementedError
