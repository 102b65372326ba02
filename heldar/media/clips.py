"""Clip export: stream-copy the recorded segments overlapping a window into one faststart MP4.

:func:`plan_clip` turns the (read-locked) segment rows into concat-demuxer pieces with ``inpoint`` /
``outpoint`` and lists what the window lacks: time no file covers (longer than ``MIN_GAP_S``) is a gap, and
a file the index names but the disk no longer holds counts as not covered. :func:`export_clip` runs
``ffmpeg -f concat -safe 0 -i LIST -c copy -avoid_negative_ts make_zero -movflags +faststart`` (no decode,
no re-encode). With a stream copy a cut cannot fall between keyframes: the first piece starts at the
keyframe at or before its ``inpoint``, so a clip may begin up to one GOP early. Gaps are closed up in the
file (the pieces play back to back); the response lists them.

:func:`expire_clips` is the retention sweep's clip step: rows past ``expires_at`` go, then their files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from heldar.media.ffmpeg_run import run_ffmpeg
from heldar.media.segment_names import segment_path

logger = logging.getLogger(__name__)

MIN_GAP_S = 1.0
MIN_PIECE_S = 0.05
CLIP_TIMEOUT_S = 180.0
CLIP_SUFFIX = ".mp4"


@dataclass(frozen=True, slots=True)
class ClipPiece:
    segment_id: str
    path: Path
    start: datetime  # what of the window this piece covers
    end: datetime
    inpoint: float  # seconds into the file
    outpoint: float

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class ClipPlan:
    start: datetime
    end: datetime
    pieces: list[ClipPiece] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def requested_seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def covered_seconds(self) -> float:
        return sum(p.seconds for p in self.pieces)


def plan_clip(
    segments: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    camera_dir: Path,
    *,
    min_gap_s: float = MIN_GAP_S,
) -> ClipPlan:
    """Pieces covering ``[start, end]`` from ``segments`` (rows with ``id, file_name, start_time, end_time``).

    Overlapping footage (a back-fill over live) is used once: a later segment starts where the earlier ended.
    """
    pieces: list[ClipPiece] = []
    holes: list[tuple[datetime, datetime]] = []
    cursor = start
    for seg in sorted(segments, key=lambda r: (r["start_time"], r["end_time"])):
        s = max(seg["start_time"], cursor)
        e = min(seg["end_time"], end)
        if (e - s).total_seconds() < MIN_PIECE_S:
            continue
        path = segment_path(camera_dir, seg["file_name"])
        if not path.is_file():
            logger.warning("clip: %s is indexed but not on disk; counted as a gap", seg["file_name"])
            continue
        if s > cursor:
            holes.append((cursor, s))
        base = seg["start_time"]
        pieces.append(ClipPiece(seg["id"], path, s, e, (s - base).total_seconds(), (e - base).total_seconds()))
        cursor = e
    if cursor < end:
        holes.append((cursor, end))
    gaps = [(a, b) for a, b in holes if (b - a).total_seconds() > min_gap_s]
    return ClipPlan(start, end, pieces, gaps)


def _quote(path: Path) -> str:
    return "'" + os.fspath(path).replace("'", "'\\''") + "'"


def concat_list(pieces: list[ClipPiece]) -> str:
    """The concat demuxer's script: one ``file`` with its ``inpoint``/``outpoint`` per piece."""
    lines = ["ffconcat version 1.0"]
    for p in pieces:
        lines.append(f"file {_quote(p.path)}")
        if p.inpoint > 0.0005:
            lines.append(f"inpoint {p.inpoint:.3f}")
        lines.append(f"outpoint {p.outpoint:.3f}")
    return "\n".join(lines) + "\n"


def clip_argv(ffmpeg: str, list_path: Path, out_path: Path, *, audio: bool = True) -> list[str]:
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", os.fspath(list_path),
        "-map", "0:v", *(["-map", "0:a?"] if audio else []),
        "-c", "copy", "-avoid_negative_ts", "make_zero", "-movflags", "+faststart",
        "-f", "mp4", os.fspath(out_path),
    ]  # fmt: skip


def clip_file_name(camera_id: str, start: datetime, clip_id: str) -> str:
    return f"clip_{camera_id}_{start.astimezone(UTC):%Y%m%dT%H%M%SZ}_{clip_id}{CLIP_SUFFIX}"


class ClipFailed(RuntimeError):
    pass


def _publish(part: Path, out_path: Path) -> int:
    """Rename a complete, non-empty ``.part`` into place; its size."""
    size = part.stat().st_size if part.is_file() else 0
    if size == 0:
        raise ClipFailed("ffmpeg wrote nothing")
    part.replace(out_path)
    return size


async def export_clip(plan: ClipPlan, out_path: Path, ffmpeg: str, timeout_s: float = CLIP_TIMEOUT_S) -> int:
    """Write the clip to ``out_path`` (via ``<out>.part``, renamed when complete); its size in bytes."""
    if not plan.pieces:
        raise ValueError("nothing to export")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    part = out_path.with_name(out_path.name + ".part")
    listing = out_path.with_name(out_path.name + ".ffconcat")
    listing.write_text(concat_list(plan.pieces), encoding="utf-8")
    try:
        code, _, err = await run_ffmpeg(clip_argv(ffmpeg, listing, part), timeout_s)
        if code != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-3:]
            logger.warning("clip: ffmpeg exited %s: %s", code, " | ".join(tail))
            raise ClipFailed(f"ffmpeg exited {code}")
        return await asyncio.to_thread(_publish, part, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            listing.unlink()
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


async def expire_clips(pool: asyncpg.Pool, clips_root: Path, now: datetime | None = None) -> dict[str, int]:
    """The retention sweep's clip step: delete expired clip rows, then unlink their files."""
    from heldar.store import media as media_store

    now = now or datetime.now(UTC)
    deleted = freed = 0
    while True:
        rows = await media_store.take_expired_clips(pool, now)
        for row in rows:
            path = clips_root / row["camera_id"] / row["file_name"]
            with contextlib.suppress(OSError):  # its signed manifest
                path.with_name(path.name + ".manifest.json").unlink()
            try:
                path.unlink()
                freed += int(row["size_bytes"])
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("clips: cannot delete %s: %s", row["file_name"], exc.__class__.__name__)
            deleted += 1
        if len(rows) < 500:
            break
    await media_store.delete_expired_sessions(pool)
    if deleted:
        logger.info("clips: %d expired clip(s) deleted, %d bytes freed", deleted, freed)
    return {"clips": deleted, "bytes": freed}
