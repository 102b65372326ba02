"""SQL for login sessions. Rows are keyed by the SHA-256 of the token; the token is never stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class SessionUser:
    """A session joined with its user, as authentication needs it."""

    session_id: str
    expires_at: datetime
    last_used_at: datetime
    user_id: str
    username: str
    role: str
    active: bool


async def insert_session(db: Executor, token_hash: str, user_id: str, expires_at: datetime) -> None:
    await db.execute(
        "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)", token_hash, user_id, expires_at
    )


async def find_session(db: Executor, token_hash: str) -> SessionUser | None:
    row = await db.fetchrow(
        "SELECT s.id AS session_id, s.expires_at, s.last_used_at, u.id AS user_id, u.username, u.role,"
        " u.active FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
        token_hash,
    )
    return None if row is None else SessionUser(**dict(row))


async def touch_session(db: Executor, token_hash: str) -> None:
    await db.execute("UPDATE sessions SET last_used_at = now() WHERE id = $1", token_hash)


async def delete_session(db: Executor, token_hash: str) -> bool:
    return not (await db.execute("DELETE FROM sessions WHERE id = $1", token_hash)).endswith(" 0")


async def delete_user_sessions(db: Executor, user_id: str) -> int:
    result = await db.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
    return int(result.rsplit(" ", 1)[-1])


async def delete_expired_sessions(db: Executor) -> int:
    result = await db.execute("DELETE FROM sessions WHERE expires_at <= now()")
    return int(result.rsplit(" ", 1)[-1])
