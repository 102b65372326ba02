"""SQL for what recorders write (segments, gaps, status, events) and what the API reads back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from heldar.ids import new_id
from heldar.recording.records import AppliedBatch, RecordingBatch, SegmentRecord, StatusChange
from heldar.schedules import SCHEDULED_MODES, Schedule, keeps_footage, windows_between
from heldar.schedules.policy import EVENT_MODES
from heldar.store.cameras import HAS_STREAM_URL_SQL, NO_STREAM_URL_CAUSE, NO_STREAM_URL_MESSAGE
from heldar.store.events import insert_event
from heldar.store.schedules import cameras_off_schedule, schedules_for
from heldar.store.segment_windows import start_floor

Executor = asyncpg.Pool | asyncpg.Connection


async def indexed_sizes(db: Executor, camera_id: str, file_names: list[str]) -> dict[str, int]:
    """file_name → size_bytes of those of ``file_names`` already indexed."""
    rows = await db.fetch(
        "SELECT file_name, size_bytes FROM segments WHERE camera_id = $1 AND file_name = ANY($2::text[])",
        camera_id,
        file_names,
    )
    return {r["file_name"]: int(r["size_bytes"]) for r in rows}


_SEGMENT_INSERT_COLUMNS = [
    "id", "camera_id", "file_name", "start_time", "end_time", "duration_s", "codec", "width", "height", "fps",
    "size_bytes", "source", "kept", "sha256",
]  # fmt: skip
_UPDATE_SEGMENT = (
    "UPDATE segments SET end_time = $2, duration_s = $3, size_bytes = $4, codec = $5,"
    " width = $6, height = $7, fps = $8, sha256 = coalesce($9, sha256) WHERE id = $1"
)


async def apply_recording_batch(pool: asyncpg.Pool, batch: RecordingBatch, *, gap_threshold_s: float) -> AppliedBatch:
    """Write one camera's batch in a single transaction, in a fixed number of round trips.

    Segments are idempotent by (camera, file name): a known file with the same size is skipped, a
    re-written one is updated. A live segment starting more than ``gap_threshold_s`` after the latest
    earlier segment ends (footage already indexed, or earlier in this batch, of any source) opens a pending
    ``recording_gaps`` row and a ``recording_gap`` event; for a camera in a scheduled mode only the parts of
    that hole inside its schedule windows do. A backlog of hundreds of segments (after a database outage) is
    read with three queries and written with one pipelined statement, not several round trips per segment.
    """
    updated = 0
    gaps: list[dict[str, Any]] = []
    camera_id = batch.camera_id
    async with pool.acquire() as conn, conn.transaction():
        record_mode = await conn.fetchval("SELECT record_mode FROM cameras WHERE id = $1", camera_id)
        if record_mode is None:
            return AppliedBatch(0, 0, [])  # camera deleted meanwhile: nothing to keep
        loaded: list[list[Schedule]] = []

        async def schedules() -> list[Schedule]:
            if not loaded:
                loaded.append((await schedules_for(conn, [camera_id]))[camera_id])
            return loaded[0]

        by_name = {seg.file_name: seg for seg in batch.segments}  # a file queued twice: its latest record
        segs = sorted(by_name.values(), key=lambda s: (s.start, s.file_name))
        known = {
            r["file_name"]: r
            for r in await conn.fetch(
                "SELECT id, file_name, size_bytes FROM segments WHERE camera_id = $1 AND file_name = ANY($2::text[])",
                camera_id, list(by_name),
            )
        }  # fmt: skip
        changed = [(known[s.file_name]["id"], s) for s in segs
                   if s.file_name in known and int(known[s.file_name]["size_bytes"]) != s.size_bytes]  # fmt: skip
        if changed:
            await conn.executemany(_UPDATE_SEGMENT, [
                (seg_id, s.end, s.duration_s, s.size_bytes, s.codec, s.width, s.height, s.fps, s.sha256)
                for seg_id, s in changed
            ])  # fmt: skip
            updated = len(changed)
        new = [s for s in segs if s.file_name not in known]
        if new:
            for seg, start, end in await _holes_before(conn, camera_id, new, gap_threshold_s):
                holes = [(start, end)]
                if record_mode in SCHEDULED_MODES:
                    # A scheduled camera is not expected to record outside its windows: only the part of the
                    # hole inside them is a gap (and only if that part is itself over the threshold).
                    holes = windows_between(await schedules(), start, end)
                for hole_start, hole_end in holes:
                    if (hole_end - hole_start).total_seconds() <= gap_threshold_s:
                        continue
                    gap = await _open_gap(conn, camera_id, hole_start, hole_end, seg.gap_cause)
                    if gap is not None:
                        gaps.append(gap)
            windows: list[tuple[datetime, datetime]] = []
            if record_mode in EVENT_MODES:
                windows = [(r["starts_at"], r["ends_at"]) for r in await conn.fetch(
                    "SELECT starts_at, ends_at FROM event_windows WHERE camera_id = $1 AND ends_at >= $2"
                    " AND starts_at <= $3", camera_id, new[0].start, max(s.end for s in new),
                )]  # fmt: skip
            rows = []
            for s in new:
                kept = (
                    keeps_footage(record_mode, await schedules(), s.start, s.end)
                    if record_mode == "scheduled_event"
                    else record_mode not in EVENT_MODES
                ) or any(w_end >= s.start and w_start <= s.end for w_start, w_end in windows)
                rows.append((new_id("seg"), camera_id, s.file_name, s.start, s.end, s.duration_s, s.codec, s.width,
                             s.height, s.fps, s.size_bytes, s.source, kept, s.sha256))  # fmt: skip
            await conn.copy_records_to_table("segments", records=rows, columns=_SEGMENT_INSERT_COLUMNS)
            live = [s for s in new if s.source == "live"]
            newest = max(new, key=lambda s: s.end)
            await conn.execute(
                "UPDATE camera_status SET segments_written = segments_written + $2,"
                " last_segment_at = greatest(last_segment_at, $3), bitrate_kbps = coalesce($4, bitrate_kbps),"
                " fps_observed = coalesce($5, fps_observed), updated_at = now() WHERE camera_id = $1",
                camera_id, len(live), newest.end,
                live[-1].bitrate_kbps if live else None, live[-1].fps if live else None,
            )  # fmt: skip
        for change in batch.status:
            await _apply_status(conn, camera_id, change)
        for event in batch.events:
            await insert_event(
                conn, event.event_type, camera_id=camera_id, severity=event.severity,
                payload=event.payload, timestamp=event.timestamp,
            )  # fmt: skip
    return AppliedBatch(len(new), updated, gaps)


async def _holes_before(
    conn: asyncpg.Connection, camera_id: str, new: list[SegmentRecord], gap_threshold_s: float
) -> list[tuple[SegmentRecord, datetime, datetime]]:
    """(segment, hole start, hole end) for each new live segment that starts more than the threshold after
    everything before it ends: footage already indexed and the batch's own earlier segments, of any source.

    Two index probes find the latest end before the batch (a segment starting before the latest earlier start
    minus the longest segment cannot end after that start), one range read the indexed footage inside it."""
    first, last = new[0].start, new[-1].start
    running = await conn.fetchval(
        "SELECT max(end_time) FROM segments WHERE camera_id = $1 AND start_time < $2 AND start_time >="
        " (SELECT max(start_time) FROM segments WHERE camera_id = $1 AND start_time < $2)"
        " - (SELECT max(end_time - start_time) FROM segments WHERE camera_id = $1)",
        camera_id, first,
    )  # fmt: skip
    indexed = await conn.fetch(
        "SELECT start_time, end_time FROM segments WHERE camera_id = $1 AND start_time >= $2 AND start_time < $3",
        camera_id, first, last,
    )  # fmt: skip
    spans: list[tuple[datetime, datetime, SegmentRecord | None]] = [
        (r["start_time"], r["end_time"], None) for r in indexed
    ]
    spans += [(s.start, s.end, s) for s in new]
    spans.sort(key=lambda item: item[0])
    holes = []
    i = 0
    while i < len(spans):
        j = i
        while j < len(spans) and spans[j][0] == spans[i][0]:
            j += 1
        for start, _end, seg in spans[i:j]:  # only what started strictly earlier counts as "before"
            if seg is not None and seg.source == "live" and running is not None:
                if (start - running).total_seconds() > gap_threshold_s:
                    holes.append((seg, running, start))
        for _start, end, _seg in spans[i:j]:
            running = end if running is None else max(running, end)
        i = j
    return holes


async def _open_gap(
    conn: asyncpg.Connection, camera_id: str, start: datetime, end: datetime, cause: str | None
) -> dict[str, Any] | None:
    seconds = (end - start).total_seconds()
    row = await conn.fetchrow(
        "INSERT INTO recording_gaps (id, camera_id, gap_start, gap_end, gap_seconds, cause)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (camera_id, gap_start) DO NOTHING"
        " RETURNING id, gap_start, gap_end, gap_seconds, cause",
        new_id("gap"), camera_id, start, end, seconds, cause,
    )  # fmt: skip
    if row is None:
        return None
    payload = {
        "gap_id": row["id"],
        "gap_start": start.isoformat(),
        "gap_end": end.isoformat(),
        "gap_seconds": round(seconds, 3),
        "cause": cause,
    }
    await insert_event(conn, "recording_gap", camera_id=camera_id, severity="warning", payload=payload)
    return dict(row)


async def _apply_status(conn: asyncpg.Connection, camera_id: str, change: StatusChange) -> None:
    await conn.execute(
        """UPDATE camera_status SET
             state = coalesce($2, state),
             last_error = CASE WHEN $4 THEN NULL ELSE coalesce($3, last_error) END,
             last_error_code = CASE WHEN $4 THEN NULL ELSE coalesce($5, last_error_code) END,
             recorder_pid = CASE WHEN $7 THEN NULL ELSE coalesce($6, recorder_pid) END,
             recorder_node = coalesce($8, recorder_node),
             last_started_at = coalesce($9, last_started_at),
             last_stop_at = coalesce($10, last_stop_at),
             reconnect_count = reconnect_count + $11,
             updated_at = now()
           WHERE camera_id = $1""",
        camera_id, change.state, change.last_error, change.clear_error, change.last_error_code,
        change.recorder_pid, change.clear_pid, change.recorder_node, change.last_started_at,
        change.last_stop_at, change.reconnects,
    )  # fmt: skip


async def record_restart(db: Executor, camera_id: str, cause: str, *, crash_loop: bool, message: str) -> None:
    """The supervisor restarted a camera unit: count it by cause; a crash loop shows as ``error``."""
    await db.execute(
        """UPDATE camera_status SET
             restart_count = restart_count + 1,
             restarts_by_cause = jsonb_set(restarts_by_cause, ARRAY[$2::text],
                 to_jsonb(coalesce((restarts_by_cause ->> $2)::bigint, 0) + 1)),
             state = CASE WHEN $3 THEN 'error' ELSE state END,
             last_error = CASE WHEN $3 THEN $4 ELSE last_error END,
             last_error_code = CASE WHEN $3 THEN 'crash_loop' ELSE last_error_code END,
             updated_at = now()
           WHERE camera_id = $1""",
        camera_id,
        cause,
        crash_loop,
        message,
    )


async def set_state(db: Executor, camera_id: str, state: str, error: str | None = None) -> None:
    await db.execute(
        "UPDATE camera_status SET state = $2, last_error = coalesce($3, last_error), updated_at = now()"
        " WHERE camera_id = $1",
        camera_id,
        state,
        error,
    )


# --- reads for the API -------------------------------------------------------------------------

_SEGMENT_COLS = (
    "id, camera_id, file_name, start_time, end_time, duration_s, codec, width, height, fps, size_bytes,"
    " source, created_at"
)


async def list_segments(
    db: Executor, camera_id: str, start: datetime | None, end: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Segments overlapping [start, end] oldest first; without a range, the newest ``limit``."""
    if start is None and end is None:
        rows = await db.fetch(
            f"SELECT * FROM (SELECT {_SEGMENT_COLS} FROM segments WHERE camera_id = $1"
            " ORDER BY start_time DESC LIMIT $2) s ORDER BY start_time",
            camera_id,
            limit,
        )
    else:
        floor = None if start is None else await start_floor(db, camera_id, start)
        if start is not None and floor is None:
            return []
        rows = await db.fetch(
            f"SELECT {_SEGMENT_COLS} FROM segments WHERE camera_id = $1"
            " AND ($2::timestamptz IS NULL OR (end_time >= $2 AND start_time >= $5))"
            " AND ($3::timestamptz IS NULL OR start_time <= $3)"
            " ORDER BY start_time LIMIT $4",
            camera_id,
            start,
            end,
            limit,
            floor,
        )
    return [dict(r) for r in rows]


async def segment_spans(db: Executor, camera_id: str, start: datetime, end: datetime) -> list[tuple]:
    """(start, end) of every segment overlapping the window, for timeline and gap maths."""
    rows = await db.fetch(
        "SELECT start_time, end_time FROM segments WHERE camera_id = $1 AND end_time >= $2"
        " AND start_time <= $3 ORDER BY start_time",
        camera_id,
        start - timedelta(seconds=1),
        end,
    )
    return [(r["start_time"], r["end_time"]) for r in rows]


def _wanted_sql(off_schedule_param: str) -> str:
    return f"c.enabled AND c.record_enabled AND NOT (c.id = ANY({off_schedule_param}::text[]))"


def status_state_sql(off_schedule_param: str) -> str:
    """The shown state: ``disabled`` when the camera is not meant to record now (disabled, recording off, or
    a scheduled camera outside its windows: ``off_schedule_param`` names a ``text[]`` of those ids), ``error``
    when it is but has no stream URL, else what its recorder reported."""
    return (
        f"CASE WHEN NOT ({_wanted_sql(off_schedule_param)}) THEN 'disabled'"
        f" WHEN NOT {HAS_STREAM_URL_SQL} THEN 'error' ELSE s.state END"
    )


def _status_cols(off_schedule_param: str) -> str:
    no_url = f"({_wanted_sql(off_schedule_param)}) AND NOT {HAS_STREAM_URL_SQL}"
    return (
        f"s.camera_id, {status_state_sql(off_schedule_param)} AS state,"
        " s.last_segment_at, s.last_started_at, s.last_stop_at, s.reconnect_count, s.restart_count,"
        " s.restarts_by_cause, s.segments_written, s.fps_observed, s.bitrate_kbps,"
        f" CASE WHEN {no_url} THEN '{NO_STREAM_URL_MESSAGE}' ELSE s.last_error END AS last_error,"
        f" CASE WHEN {no_url} THEN '{NO_STREAM_URL_CAUSE}' ELSE s.last_error_code END AS last_error_code,"
        " s.recorder_pid, s.recorder_node, s.updated_at"
    )


async def list_status(db: Executor, only: list[str] | None = None) -> list[dict[str, Any]]:
    off = await cameras_off_schedule(db, only=only)
    rows = await db.fetch(
        f"SELECT {_status_cols('$2')} FROM camera_status s JOIN cameras c ON c.id = s.camera_id"
        " WHERE ($1::text[] IS NULL OR s.camera_id = ANY($1::text[])) ORDER BY s.camera_id",
        only,
        off,
    )
    return [dict(r) for r in rows]


async def get_status(db: Executor, camera_id: str) -> dict[str, Any] | None:
    off = await cameras_off_schedule(db, only=[camera_id])
    row = await db.fetchrow(
        f"SELECT {_status_cols('$2')} FROM camera_status s JOIN cameras c ON c.id = s.camera_id WHERE s.camera_id = $1",
        camera_id,
        off,
    )
    return dict(row) if row else None
