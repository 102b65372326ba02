"""SQL for the persisted recording gaps that ANR acts on, and its attempt ledger."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from heldar.errors import NotFound
from heldar.ids import new_id
from heldar.store.events import insert_event

Executor = asyncpg.Pool | asyncpg.Connection

GAP_COLUMNS = (
    "id, camera_id, gap_start, gap_end, gap_seconds, cause, fill_state, fill_attempts, last_attempt_at,"
    " filled_at, last_error, created_at"
)
FILL_STATES = ("pending", "filled", "failed")


async def list_gaps(db: Executor, camera_id: str, state: str | None, limit: int) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"SELECT {GAP_COLUMNS} FROM recording_gaps WHERE camera_id = $1 AND ($2::text IS NULL OR fill_state = $2)"
        " ORDER BY gap_start DESC LIMIT $3",
        camera_id,
        state,
        limit,
    )
    return [dict(r) for r in rows]


async def get_gap(db: Executor, camera_id: str, gap_id: str) -> dict[str, Any]:
    row = await db.fetchrow(
        f"SELECT {GAP_COLUMNS} FROM recording_gaps WHERE id = $1 AND camera_id = $2", gap_id, camera_id
    )
    if row is None:
        raise NotFound(f"recording gap {gap_id!r} not found on camera {camera_id!r}")
    return dict(row)


async def retry_gap(db: Executor, camera_id: str, gap_id: str) -> dict[str, Any]:
    """Back to ``pending`` with zero attempts; clears last_attempt_at and filled_at."""
    row = await db.fetchrow(
        "UPDATE recording_gaps SET fill_state = 'pending', fill_attempts = 0, last_attempt_at = NULL,"
        f" filled_at = NULL WHERE id = $1 AND camera_id = $2 RETURNING {GAP_COLUMNS}",
        gap_id,
        camera_id,
    )
    if row is None:
        raise NotFound(f"recording gap {gap_id!r} not found on camera {camera_id!r}")
    return dict(row)


async def gaps_to_fill(
    db: Executor, camera_id: str, *, max_attempts: int, max_age_hours: float, limit: int = 20
) -> list[dict[str, Any]]:
    """Pending gaps with attempts left, started within ``max_age_hours``, newest first."""
    since = datetime.now(UTC) - timedelta(hours=max_age_hours)
    rows = await db.fetch(
        f"SELECT {GAP_COLUMNS} FROM recording_gaps WHERE camera_id = $1 AND fill_state = 'pending'"
        " AND fill_attempts < $2 AND gap_start >= $3 ORDER BY gap_start DESC LIMIT $4",
        camera_id,
        max_attempts,
        since,
        limit,
    )
    return [dict(r) for r in rows]


async def record_fill_attempt(
    pool: asyncpg.Pool,
    *,
    camera_id: str,
    gap_id: str,
    started_at: datetime,
    ok: bool,
    error: str | None,
    file_name: str | None,
    seconds_recovered: float,
    max_attempts: int,
) -> dict[str, Any] | None:
    """Count one attempt: ``filled`` on success; on failure ``failed`` once attempts reach the maximum.

    Writes the ledger row and a ``recording_gap_filled`` / ``recording_gap_failed`` event; returns the row.
    """
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""UPDATE recording_gaps SET
                   fill_attempts = fill_attempts + 1,
                   last_attempt_at = $3,
                   fill_state = CASE WHEN $4 THEN 'filled'
                                     WHEN fill_attempts + 1 >= $6 THEN 'failed' ELSE 'pending' END,
                   filled_at = CASE WHEN $4 THEN $3 ELSE filled_at END,
                   last_error = CASE WHEN $4 THEN NULL ELSE $5 END
                 WHERE id = $1 AND camera_id = $2 RETURNING {GAP_COLUMNS}""",
            gap_id, camera_id, now, ok, error, max_attempts,
        )  # fmt: skip
        if row is None:
            return None
        await conn.execute(
            "INSERT INTO anr_attempts (id, gap_id, camera_id, started_at, finished_at, outcome, error, file_name,"
            " seconds_recovered) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            new_id("anr"), gap_id, camera_id, started_at, now, "filled" if ok else "failed", error, file_name,
            seconds_recovered,
        )  # fmt: skip
        payload = {
            "gap_id": gap_id,
            "gap_start": row["gap_start"].isoformat(),
            "gap_end": row["gap_end"].isoformat(),
            "attempts": row["fill_attempts"],
        }
        if ok:
            payload["seconds_recovered"] = round(seconds_recovered, 3)
            await insert_event(conn, "recording_gap_filled", camera_id=camera_id, payload=payload)
        elif row["fill_state"] == "failed":
            payload["error"] = error
            await insert_event(conn, "recording_gap_failed", camera_id=camera_id, severity="warning", payload=payload)
    return dict(row)


async def anr_stats(db: Executor) -> dict[str, Any]:
    """Gaps by state, attempts by outcome and seconds recovered, for the metrics endpoint."""
    by_state = await db.fetch("SELECT fill_state, count(*) AS n FROM recording_gaps GROUP BY fill_state")
    by_outcome = await db.fetch(
        "SELECT outcome, count(*) AS n, coalesce(sum(seconds_recovered), 0) AS s FROM anr_attempts GROUP BY outcome"
    )
    by_cause = await db.fetch(
        "SELECT split_part(coalesce(cause, 'unknown'), ':', 1) AS cause, count(*) AS n FROM recording_gaps GROUP BY 1"
    )
    causes: dict[str, int] = {}
    for r in by_cause:  # the cause code before ':' ("failover", "timeout", ...); anything odd is "other"
        code = r["cause"] if _CAUSE_CODE.fullmatch(r["cause"] or "") else "other"
        causes[code] = causes.get(code, 0) + int(r["n"])
    return {
        "gaps": {r["fill_state"]: int(r["n"]) for r in by_state},
        "attempts": {r["outcome"]: int(r["n"]) for r in by_outcome},
        "seconds_recovered": float(sum(r["s"] for r in by_outcome)),
        "gaps_by_cause": causes,
    }


_CAUSE_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
