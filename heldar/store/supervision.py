"""SQL for supervision: the supervisor's leader lock and run ledger, and cluster-wide ANR fill slots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.ids import new_id

Executor = asyncpg.Pool | asyncpg.Connection

# pg_advisory_lock key held by the one active supervisor of a database ("HSUPER").
SUPERVISOR_LOCK_KEY = 0x485355504552
# pg_advisory_xact_lock key that serialises fill-slot accounting.
FILL_SLOTS_LOCK_KEY = 0x48414E52534C


async def try_leader_lock(conn: asyncpg.Connection) -> bool:
    """Take the supervisor lock on this connection (held until it closes); False when another holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", SUPERVISOR_LOCK_KEY))


async def holds_leader_lock(conn: asyncpg.Connection) -> bool:
    """Whether this very connection still holds the supervisor lock (a session lock lives as long as it)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            " AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid"
            " AND objsubid = 1 AND granted)",
            SUPERVISOR_LOCK_KEY,
        )
    )


@dataclass(frozen=True)
class PreviousRun:
    instance: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None

    @property
    def clean(self) -> bool:
        return self.stopped_at is not None


async def previous_run(db: Executor) -> PreviousRun | None:
    row = await db.fetchrow(
        "SELECT instance, started_at, heartbeat_at, stopped_at FROM supervisor_runs ORDER BY started_at DESC LIMIT 1"
    )
    return None if row is None else PreviousRun(**dict(row))


async def begin_run(db: Executor, instance: str, *, took_over: bool) -> str:
    run_id = new_id("run")
    await db.execute(
        "INSERT INTO supervisor_runs (id, instance, took_over) VALUES ($1, $2, $3)", run_id, instance, took_over
    )
    return run_id


async def heartbeat_run(db: Executor, run_id: str) -> None:
    await db.execute("UPDATE supervisor_runs SET heartbeat_at = now() WHERE id = $1", run_id)


async def end_run(db: Executor, run_id: str) -> None:
    """A clean stop: the next start reports the time in between as ``heldar_stopped``."""
    await db.execute("UPDATE supervisor_runs SET stopped_at = now(), heartbeat_at = now() WHERE id = $1", run_id)


async def acquire_fill_slot(pool: asyncpg.Pool, holder: str, ttl_s: float, capacity: int) -> tuple[str | None, int]:
    """(lease id, slots now in use) when fewer than ``capacity`` unexpired leases exist, else (None, in use).

    The lease lapses after ``ttl_s``, so a holder that dies frees its slot."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", FILL_SLOTS_LOCK_KEY)
        await conn.execute("DELETE FROM anr_slot_leases WHERE expires_at <= now()")
        in_use = int(await conn.fetchval("SELECT count(*) FROM anr_slot_leases"))
        if in_use >= capacity:
            return None, in_use
        lease_id = new_id("lease")
        await conn.execute(
            "INSERT INTO anr_slot_leases (id, holder, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
            lease_id,
            holder,
            float(ttl_s),
        )
        return lease_id, in_use + 1


async def release_fill_slot(db: Executor, lease_id: str) -> bool:
    return (await db.execute("DELETE FROM anr_slot_leases WHERE id = $1", lease_id)).endswith(" 1")


async def fill_slot_status(db: Executor) -> dict[str, Any]:
    rows = await db.fetch("SELECT holder FROM anr_slot_leases WHERE expires_at > now() ORDER BY holder")
    return {"in_use": len(rows), "holders": [r["holder"] for r in rows]}
