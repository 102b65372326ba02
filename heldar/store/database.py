"""Connecting to PostgreSQL: the embedded server (pgserver) and asyncpg pools.

With no ``HELDAR_DATABASE_URL`` an embedded PostgreSQL 16 runs under ``<data_dir>/pg`` and speaks over
a unix socket; it stops when the process that started it exits. Every pool session runs in UTC.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from heldar.secrets.transit import resolve as resolve_ref
from heldar.store.migrate import migrate

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


class DataDirInUse(RuntimeError):
    """Another live process holds the data directory's lock; the message says which and what to do."""


class DatabaseUnreachable(RuntimeError):
    """The configured database cannot be used; the message names host, port and the setting, never a secret."""


LOCK_FILE = "heldar.lock"


class DataDirLock:
    """An exclusive ``flock`` on ``<data_dir>/heldar.lock``, held for the life of this process.

    The kernel drops it when the process dies however it dies, so a stale file never blocks a restart. The file
    holds the owner's pid for the message a second process prints. The descriptor is not inherited by child
    processes (PostgreSQL, Ray), so a leftover child never keeps the directory locked.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DataDirLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise DataDirInUse(self._busy_message()) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _busy_message(self) -> str:
        try:
            owner = self.path.read_text().strip() or "unknown"
        except OSError:
            owner = "unknown"
        return (
            f"data directory {self.data_dir} is in use by another heldar (pid {owner}); stop it first, "
            "or set HELDAR_DATA_DIR to another directory"
        )

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def describe_connect_error(url: str, exc: BaseException) -> str:
    """A one-line, secret-free explanation of why ``url`` could not be used, with the fix."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if host.startswith("/") or "host=" in parts.query:  # a unix socket (the embedded server)
        where = "the database"
    else:
        where = f"the database at {host}:{parts.port or 5432}"
    user = unquote(parts.username) if parts.username else None
    name = parts.path.lstrip("/") or user or "postgres"
    fix = "check HELDAR_DATABASE_URL"
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return f"{where} refused the credentials of user {user!r}; {fix}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"{where} has no database {name!r}; create it (createdb {name}) or {fix}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach {where} (connection refused); is PostgreSQL running? {fix}"
    if isinstance(exc, TimeoutError):
        return f"cannot reach {where} (timed out); {fix} or raise HELDAR_DB_CONNECT_TIMEOUT_S"
    if isinstance(exc, OSError):
        reason = exc.strerror or exc.__class__.__name__
        return f"cannot reach {where} ({reason}); {fix}"
    return f"cannot use {where} ({exc.__class__.__name__}); {fix}"


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
        resolve_ref(url),
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
    conn = await asyncpg.connect(resolve_ref(url), timeout=timeout, server_settings=settings)
    await _init_connection(conn)
    return conn


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 10.0) -> None:
    """Close ``pool`` gracefully, but never hang on a connection still held: terminate after ``timeout_s``."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        logger.warning("database pool did not close within %.0fs; terminating its connections", timeout_s)
        pool.terminate()


async def connect_or_explain(url: str, timeout: float = 5.0) -> asyncpg.Connection:
    """``connect``, but a database that cannot be used raises ``DatabaseUnreachable`` with a one-line fix."""
    try:
        return await connect(url, timeout=timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnreachable(describe_connect_error(url, exc)) from None


async def prepare_database(
    database_url: str | None, data_dir: Path, *, connect_timeout_s: float = 5.0
) -> tuple[str, EmbeddedPostgres | None]:
    """Start the embedded server under ``<data_dir>/pg`` when no URL is given, then apply migrations.

    Returns the URL and the embedded server (None with an external database). The caller holds the data
    directory's ``DataDirLock`` when it is embedded, and stops the server.
    """
    embedded = None
    url = database_url
    if url is None:
        embedded = EmbeddedPostgres(data_dir / "pg")
        url = await asyncio.to_thread(embedded.start)
    try:
        conn = await connect_or_explain(url, timeout=connect_timeout_s)
        try:
            applied = await migrate(conn)
            if applied:
                logger.info("database migrated to version %s", applied[-1])
        finally:
            await conn.close()
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    return url, embedded
