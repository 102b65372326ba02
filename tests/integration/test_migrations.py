"""Migrations against a real PostgreSQL: applied once, idempotent, safe when run concurrently."""

from __future__ import annotations

import asyncio

import pytest

from heldar.store.database import connect
from heldar.store.migrate import Migration, MigrationError, load_migrations, migrate

pytestmark = pytest.mark.integration

EXPECTED_TABLES = {
    "cameras", "camera_status", "segments", "recording_gaps", "events", "users", "sessions",
    "api_keys", "audit_log", "schema_migrations",
}  # fmt: skip


async def _tables(url: str) -> set[str]:
    conn = await connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


def test_migrations_twice_is_a_noop(new_database) -> None:  # type: ignore[no-untyped-def]
    url = new_database(migrated=False)

    async def run() -> tuple[list[int], list[int], int]:
        conn = await connect(url)
        try:
            first = await migrate(conn)
            second = await migrate(conn)
            count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            return first, second, count
        finally:
            await conn.close()

    first, second, count = asyncio.run(run())
    assert first == [m.version for m in load_migrations()]
    assert second == []
    assert count == len(first)
    assert EXPECTED_TABLES <= asyncio.run(_tables(url))


def test_concurrent_migrators_do_not_race(new_database) -> None:  # type: ignore[no-untyped-def]
    url = new_database(migrated=False)
    slow = [
        *load_migrations(),
        Migration(9999, "slow_probe", "SELECT pg_sleep(0.5); CREATE TABLE probe (x int);"),
    ]

    async def one() -> list[int]:
        conn = await connect(url)
        try:
            return await migrate(conn, slow)
        finally:
            await conn.close()

    async def many() -> list[list[int]]:
        return list(await asyncio.gather(*(one() for _ in range(4))))

    results = asyncio.run(many())
    applied = [r for r in results if r]
    assert len(applied) == 1, results  # exactly one migrator did the work; the others found it done
    assert 9999 in applied[0]


def test_changed_migration_is_refused(new_database) -> None:  # type: ignore[no-untyped-def]
    url = new_database(migrated=True)
    first = load_migrations()[0]
    tampered = [Migration(first.version, first.name, first.sql + "\n-- edited")]

    async def run() -> None:
        conn = await connect(url)
        try:
            await migrate(conn, tampered)
        finally:
            await conn.close()

    with pytest.raises(MigrationError, match="changed after it was applied"):
        asyncio.run(run())
