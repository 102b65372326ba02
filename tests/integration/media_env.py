"""Real footage for media tests: the recorder's own ffmpeg command recording the RTSP simulator, indexed.

``record_footage`` runs :func:`heldar.media.recorder_command.build_recorder_argv` against a ``heldar.fakecam``
camera for a few seconds (2 s fragmented-MP4 segments, stream copy, exactly as the recorder does) and returns
the closed segment files with their probed durations; ``index_footage`` copies them under a recordings root
and inserts their rows.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from heldar.ids import new_id
from heldar.media.binary import ffmpeg_exe
from heldar.media.integrity import file_sha256
from heldar.media.probe import probe_segment
from heldar.media.recorder_command import RecorderSpec, build_recorder_argv, recorder_env
from heldar.media.segment_names import ensure_day_dirs, list_segment_files, parse_segment_name, segment_path


@dataclass(frozen=True)
class Footage:
    path: Path
    name: str
    start: datetime
    duration_s: float
    size_bytes: int
    codec: str


def record_footage(url: str, camera_dir: Path, seconds: float = 12.0, segment_seconds: int = 2) -> list[Footage]:
    """Record ``seconds`` of ``url`` with the recorder's command; the closed segments, oldest first."""
    from datetime import UTC

    ensure_day_dirs(camera_dir, datetime.now(UTC))
    spec = RecorderSpec(input_url=url, camera_dir=camera_dir, run_id="t1", segment_seconds=segment_seconds)
    proc = subprocess.Popen(
        build_recorder_argv(spec, ffmpeg_exe()),
        env=recorder_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out = []
    files = sorted(list_segment_files(camera_dir), key=lambda f: f.name)
    for f in files[:-1]:  # the last one was cut by the stop
        path = segment_path(camera_dir, f.name)
        probe = probe_segment(path)
        parsed = parse_segment_name(f.name)
        if probe is None or parsed is None:
            continue
        out.append(Footage(path, f.name, parsed.start, probe.duration_s, probe.size_bytes, probe.codec))
    return out


async def index_footage(
    pool: asyncpg.Pool, root: Path, camera_id: str, footage: list[Footage], *, contiguous: bool = True
) -> list[dict[str, object]]:
    """Copy ``footage`` under ``root/camera_id`` and insert its rows with the file hash the indexer stores.
    ``contiguous``: each start is the previous end (the names' whole-second starts drift by up to a second)."""
    rows: list[dict[str, object]] = []
    start = footage[0].start
    for f in footage:
        s = start if contiguous else f.start
        dest = segment_path(root / camera_id, f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.path, dest)
        rows.append(
            {"id": new_id("seg"), "camera_id": camera_id, "file_name": f.name, "start_time": s,
             "end_time": s + timedelta(seconds=f.duration_s), "duration_s": f.duration_s,
             "codec": f.codec, "size_bytes": f.size_bytes, "source": "live", "sha256": file_sha256(dest)}
        )  # fmt: skip
        start = s + timedelta(seconds=f.duration_s)
    await pool.copy_records_to_table("segments", records=[tuple(r.values()) for r in rows], columns=list(rows[0]))
    return rows
