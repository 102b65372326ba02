"""Connecting to PostgreSQL: the embedded server (pgserver) and asyncpg pools.

With no ``HELDAR_DATABASE_URL`` an embedded PostgreSQL 16 runs under ``<data_dir>/pg`` and speaks over
a unix socket; it stops when the process that started it exits. Every pool session runs in UTC.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from pathlib import Path
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now" (→ 503 + Retry-After).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
)


# SQLSTATEs that mean the server or database cannot serve us right now.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300", "55000", "55006")


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means "database unreachable / not accepting connections; retry later"."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and state.startswith(_UNAVAILABLE_SQLSTATES)


class EmbeddedPostgres:
    """An embedded PostgreSQL under ``pgdata``; ``stop()`` (or process exit) shuts it down."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        import pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(self.pgdata)
        logger.info("starting embedded PostgreSQL in %s", self.pgdata)
        self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        return self.url

    @property
    def url(self) -> str:
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server this process started (a fast shutdown: sessions are disconnected)."""
        if self._server is None:
            return
        from pgserver._commands import pg_ctl

        logger.info("stopping embedded PostgreSQL")
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user, timeout=30)
        except Exception as exc:
            logger.warning("pg_ctl stop failed (%s); terminating the postmaster", exc.__class__.__name__)
            with suppress(Exception):
                process = self._server.get_postmaster_info().process
                process.terminate()
                process.wait(5)
        with suppress(Exception):
            self._server._cleanup()
        self._server = None


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver counts handles by pid in a file; drop pids of processes that no longer exist."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        with suppress(Exception):
            live = [pid for pid in json.loads(handles.read_text()) if psutil.pid_exists(pid)]
            handles.write_text(json.dumps(live))


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    url: str, *, max_size: int, min_size: int = 1, timeout: float = 5.0, idle_lifetime_s: float = 60.0
) -> asyncpg.Pool:
    """An asyncpg pool whose sessions use UTC; idle connections are closed after ``idle_lifetime_s``."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min(min_size, max_size),
        max_size=max_size,
        timeout=timeout,
        command_timeout=30,
        max_inactive_connection_lifetime=idle_lifetime_s,
        server_settings={"timezone": "UTC", "application_name": "heldar"},
        init=_init_connection,
    )
    assert pool is not None
    return pool


# Server-side TCP keepalives for a session whose death must be noticed fast (the supervisor's leader lock):
# a client whose node vanished without closing its socket is dropped after about 5 + 2 * 3 = 11 s, so its
# advisory lock frees for a standby instead of waiting for the kernel's two-hour default.
FAST_DEATH_SETTINGS = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}


async def connect(url: str, timeout: float = 5.0, *, fast_death: bool = False) -> asyncpg.Connection:
    settings = {"timezone": "UTC", **(FAST_DEATH_SETTINGS if fast_death else {})}
    conn = await asyncpg.connect(url, timeout=timeout, server_settings=settings)
    await _init_connection(conn)
    return conn


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 10.0) -> None:
    """Close ``pool`` gracefully, but never hang on a connection still held: terminate after ``timeout_s``."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        logger.warning("database pool did not close within %.0fs; terminating its connections", timeout_s)
        pool.terminate()
