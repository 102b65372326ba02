"""The first admin: created at start when auth is on and the user table is empty."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from heldar.auth.passwords import Passwords
from heldar.ids import new_id
from heldar.store import users as user_store

logger = logging.getLogger(__name__)

DEFAULT_ADMIN_USER = "admin"
_BOOTSTRAP_LOCK = 0x68656C64  # advisory lock key: one process bootstraps, the others see the user


@dataclass(frozen=True)
class Bootstrapped:
    user_id: str
    username: str
    generated_password: str | None  # set only when we made one up; print it once, never log it


def generate_password() -> str:
    return secrets.token_urlsafe(18)


async def ensure_bootstrap_admin(
    conn: asyncpg.Connection, passwords: Passwords, *, username: str | None, password: str | None
) -> Bootstrapped | None:
    """Create the first admin when there are no users at all; None when users already exist."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOOTSTRAP_LOCK)
        if await user_store.count_users(conn) > 0:
            return None
        name = username or DEFAULT_ADMIN_USER
        generated = None if password else generate_password()
        secret = password or generated
        assert secret is not None
        password_hash = await asyncio.to_thread(passwords.hash, secret)
        user = await user_store.insert_user(
            conn, user_id=new_id("usr"), username=name, password_hash=password_hash, role="admin"
        )
    logger.info("bootstrap admin %r created (%s password)", name, "generated" if generated else "configured")
    return Bootstrapped(user.id, user.username, generated)


PASSWORD_FILE = "bootstrap-admin-password"


def announce(result: Bootstrapped, data_dir: Path) -> Path | None:
    """Write a generated password to ``<data_dir>/bootstrap-admin-password`` (mode 0600) and print where
    it is. The password itself never reaches stdout (under systemd or docker that is a log) nor a log record."""
    if result.generated_password is None:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover from an earlier database: never reuse its mode or owner
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"username: {result.username}\npassword: {result.generated_password}\n")
    line = "=" * 72
    print(
        f"{line}\nheldar created the first admin account {result.username!r}; its generated password is in\n"
        f"  {path}  (mode 0600)\nSign in, change the password, then delete that file.\n{line}",
        flush=True,
    )
    return path
