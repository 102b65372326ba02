"""SQL for user accounts: lookup, CRUD with last-admin protection, and the atomic lockout update."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from heldar.errors import BadRequest, Conflict, NotFound

Executor = asyncpg.Pool | asyncpg.Connection

_COLUMNS = (
    "id, username, password_hash, role, display_name, active, failed_login_count, locked_until, created_at, updated_at"
)
_SETTABLE = frozenset({"password_hash", "role", "display_name", "active"})


def _plausible_id(value: str) -> bool:
    """Ids we mint are short ASCII; anything else (NUL, lone surrogates, megabytes) cannot exist."""
    return 0 < len(value) <= 128 and value.isascii() and "\x00" not in value


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str
    role: str
    display_name: str | None
    active: bool
    failed_login_count: int
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime


def _user(row: asyncpg.Record) -> User:
    return User(**dict(row))


async def count_users(db: Executor) -> int:
    return int(await db.fetchval("SELECT count(*) FROM users"))


async def insert_user(
    db: Executor,
    *,
    user_id: str,
    username: str,
    password_hash: str,
    role: str,
    display_name: str | None = None,
    active: bool = True,
) -> User:
    try:
        row = await db.fetchrow(
            f"INSERT INTO users (id, username, password_hash, role, display_name, active)"
            f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            user_id,
            username,
            password_hash,
            role,
            display_name,
            active,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"user {username!r} already exists") from None
    return _user(row)


async def get_user(db: Executor, user_id: str) -> User:
    if not _plausible_id(user_id):
        raise NotFound("user not found")
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    if row is None:
        raise NotFound("user not found")
    return _user(row)


async def find_by_username(db: Executor, username: str) -> User | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE username = $1", username)
    return None if row is None else _user(row)


async def list_users(db: Executor) -> list[User]:
    return [_user(r) for r in await db.fetch(f"SELECT {_COLUMNS} FROM users ORDER BY username")]


async def record_login_failure(
    db: Executor, user_id: str, *, max_failures: int, lockout_s: float
) -> tuple[int, datetime | None] | None:
    """Count one failed login on an active, unlocked account, locking it at ``max_failures``.

    One atomic UPDATE: concurrent failures cannot both slip under the limit. A lock that has run out
    starts the count afresh. Returns (count, locked_until), or None when the account is inactive,
    already locked, or gone (the counter does not move then).
    """
    row = await db.fetchrow(
        """
        WITH next AS (
            SELECT id, (CASE WHEN locked_until IS NOT NULL THEN 0 ELSE failed_login_count END) + 1 AS n
            FROM users WHERE id = $1 AND active AND (locked_until IS NULL OR locked_until <= now())
            FOR UPDATE
        )
        UPDATE users u SET
            failed_login_count = next.n,
            locked_until = CASE WHEN $2 > 0 AND next.n >= $2
                                THEN now() + make_interval(secs => $3) ELSE NULL END
        FROM next WHERE u.id = next.id
        RETURNING u.failed_login_count, u.locked_until
        """,
        user_id,
        max_failures,
        float(lockout_s),
    )
    return None if row is None else (int(row["failed_login_count"]), row["locked_until"])


async def reserve_login_attempt(
    db: Executor, user_id: str, *, max_failures: int, lockout_s: float
) -> tuple[int, datetime | None] | None:
    """Reserve one login attempt *before* the password is checked: it counts as a failure until the
    check succeeds (``finish_login``). The attempt that reaches ``max_failures`` locks the account, so however
    many logins run at once, at most ``max_failures`` passwords are ever checked per lockout window.
    Returns (attempt number, locked_until), or None when the account is locked, inactive or gone."""
    return await record_login_failure(db, user_id, max_failures=max_failures, lockout_s=lockout_s)


async def finish_login(db: Executor, user_id: str, attempt: int | None) -> bool:
    """After a right password: clear the counter, unless the account was locked meanwhile by *other*
    attempts (the re-check after the slow hash). ``attempt`` None: lockout off or a trusted-source login,
    which clears any lock. True when the login may go on."""
    if attempt is None:
        await clear_login_failures(db, user_id)
        return True
    row = await db.fetchval(
        "UPDATE users SET failed_login_count = 0, locked_until = NULL WHERE id = $1 AND active"
        " AND (locked_until IS NULL OR locked_until <= now() OR failed_login_count = $2) RETURNING id",
        user_id,
        attempt,
    )
    return row is not None


async def trust_source(db: Executor, user_id: str, source: str) -> None:
    await db.execute(
        "INSERT INTO login_trusted_sources (user_id, source) VALUES ($1, $2)"
        " ON CONFLICT (user_id, source) DO UPDATE SET last_success_at = now()",
        user_id,
        source[:256],
    )


async def is_trusted_source(db: Executor, user_id: str, source: str, *, max_age_s: float) -> bool:
    return bool(
        await db.fetchval(
            "SELECT 1 FROM login_trusted_sources WHERE user_id = $1 AND source = $2"
            " AND last_success_at > now() - make_interval(secs => $3)",
            user_id,
            source[:256],
            float(max_age_s),
        )
    )


async def clear_login_failures(db: Executor, user_id: str) -> None:
    """After a successful login; writes only when there is something to clear."""
    await db.execute(
        "UPDATE users SET failed_login_count = 0, locked_until = NULL"
        " WHERE id = $1 AND (failed_login_count <> 0 OR locked_until IS NOT NULL)",
        user_id,
    )


async def set_password_hash(db: Executor, user_id: str, password_hash: str) -> None:
    """Store a re-hash (new cost parameters) of the same password; sessions are kept."""
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def unlock_user(db: Executor, user_id: str) -> User:
    if not _plausible_id(user_id):
        raise NotFound("user not found")
    row = await db.fetchrow(
        f"UPDATE users SET failed_login_count = 0, locked_until = NULL, updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        user_id,
    )
    if row is None:
        raise NotFound("user not found")
    return _user(row)


async def _lock_admins(conn: asyncpg.Connection) -> set[str]:
    """Lock every active admin row for this transaction; concurrent demotions queue behind it."""
    rows = await conn.fetch("SELECT id FROM users WHERE role = 'admin' AND active ORDER BY id FOR UPDATE")
    return {r["id"] for r in rows}


async def update_user(pool: asyncpg.Pool, user_id: str, changes: dict[str, Any]) -> User:
    """Apply ``changes`` (password_hash, role, display_name, active); any edit clears the lockout.

    Refuses (400) to demote or disable the last active admin. A new password or a disabled account
    ends all of the user's sessions.
    """
    unknown = set(changes) - _SETTABLE
    assert not unknown, f"not settable: {unknown}"
    if not _plausible_id(user_id):
        raise NotFound("user not found")
    async with pool.acquire() as conn, conn.transaction():
        admins = await _lock_admins(conn)
        current = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id)
        if current is None:
            raise NotFound("user not found")
        stays_admin = changes.get("role", current["role"]) == "admin" and changes.get("active", current["active"])
        if user_id in admins and not stays_admin and not admins - {user_id}:
            raise BadRequest("the last active admin cannot be demoted or disabled")
        names = sorted(changes)
        assignments = "".join(f"{name} = ${i}, " for i, name in enumerate(names, start=2))
        row = await conn.fetchrow(
            f"UPDATE users SET {assignments}failed_login_count = 0, locked_until = NULL, updated_at = now()"
            f" WHERE id = $1 RETURNING {_COLUMNS}",
            user_id,
            *[changes[n] for n in names],
        )
        if "password_hash" in changes or changes.get("active") is False:
            await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
    return _user(row)


async def delete_user(pool: asyncpg.Pool, user_id: str, *, actor_id: str) -> User:
    """Delete a user (their sessions go with them). Nobody deletes themselves or the last active admin."""
    if user_id == actor_id:
        raise BadRequest("you cannot delete your own account")
    if not _plausible_id(user_id):
        raise NotFound("user not found")
    async with pool.acquire() as conn, conn.transaction():
        admins = await _lock_admins(conn)
        if user_id in admins and not admins - {user_id}:
            raise BadRequest("the last active admin cannot be deleted")
        row = await conn.fetchrow(f"DELETE FROM users WHERE id = $1 RETURNING {_COLUMNS}", user_id)
        if row is None:
            raise NotFound("user not found")
    return _user(row)
