"""Shared set-up for storage tests: cameras and segments with real (tiny) files, straight in PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from heldar.ids import new_id
from heldar.media.segment_names import day_dir_name, segment_name, segment_path
from heldar.store.database import create_pool

T = TypeVar("T")


def run(url: str, job: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run ``job(pool)`` on a fresh small pool."""

    async def main() -> T:
        pool = await create_pool(url, max_size=4)
        try:
            return await job(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


async def add_camera(pool: asyncpg.Pool, camera_id: str, **fields: Any) -> None:
    # Registered a day ago: footage written "in the past" by these tests falls after the registration (time
    # before it is never reported as a gap).
    cols = {"id": camera_id, "name": camera_id, "main_stream_url": "rtsp://127.0.0.1:1/x",
            "created_at": datetime.now(UTC) - timedelta(days=1), **fields}  # fmt: skip
    names = ", ".join(cols)
    params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    await pool.execute(f"INSERT INTO cameras ({names}) VALUES ({params})", *cols.values())
    await pool.execute("INSERT INTO camera_status (camera_id) VALUES ($1)", camera_id)


async def add_segments(
    pool: asyncpg.Pool,
    root: Path,
    camera_id: str,
    count: int,
    *,
    size: int = 1000,
    start: datetime | None = None,
    step_s: float = 2.0,
    flat: bool = False,
    token: str = "abc",
) -> list[dict[str, Any]]:
    """``count`` consecutive segments of ``step_s`` seconds with files of ``size`` bytes, oldest first."""
    start = start or datetime.now(UTC) - timedelta(seconds=count * step_s)
    rows = []
    for i in range(count):
        s = start + timedelta(seconds=i * step_s)
        name = segment_name(s, f"{token}{i}")
        folder = root / camera_id if flat else root / camera_id / day_dir_name(s)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\0" * size)
        rows.append(
            {"id": new_id("seg"), "camera_id": camera_id, "file_name": name, "start_time": s,
             "end_time": s + timedelta(seconds=step_s), "duration_s": step_s, "size_bytes": size}
        )  # fmt: skip
    await pool.copy_records_to_table(
        "segments",
        records=[tuple(r.values()) for r in rows],
        columns=list(rows[0]) if rows else [],
    )
    return rows


def file_of(root: Path, camera_id: str, name: str) -> Path:
    return segment_path(root / camera_id, name)


def files_on_disk(root: Path, camera_id: str) -> set[str]:
    out = set()
    for _, _, names in os.walk(root / camera_id):
        out.update(n for n in names if n.endswith(".mp4"))
    return out


def bytes_on_disk(root: Path, camera_id: str | None = None) -> int:
    base = root if camera_id is None else root / camera_id
    total = 0
    for folder, _, names in os.walk(base):
        total += sum(os.path.getsize(os.path.join(folder, n)) for n in names if n.endswith(".mp4"))
    return total
