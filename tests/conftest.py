"""Shared fixtures: one embedded PostgreSQL and one Ray per test session, fresh databases per module.

Set HELDAR_TEST_DATABASE_URL to run against an existing PostgreSQL server instead of the embedded one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from heldar.store.database import EmbeddedPostgres, connect
from heldar.store.migrate import migrate


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("HELDAR_TEST_DATABASE_URL")
    if external:
        yield external
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    url = embedded.start()
    yield url
    embedded.stop()


def database_url_for(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _create_database(server_url: str, name: str) -> None:
    conn = await connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def new_database(pg_server_url: str):  # type: ignore[no-untyped-def]
    """Factory: an empty database on the session's server; returns its URL."""

    def make(migrated: bool = True) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        asyncio.run(_create_database(pg_server_url, name))
        url = database_url_for(pg_server_url, name)
        if migrated:

            async def _migrate() -> None:
                conn = await connect(url)
                try:
                    await migrate(conn)
                finally:
                    await conn.close()

            asyncio.run(_migrate())
        return url

    return make


# Ray workers get this HELDAR_SECRET_KEY (as a deployment gives every node its key), so a test whose API seals
# secrets with it has recorders that can open them; an API without a key stores clear values, opened as is.
TEST_SECRET_KEY = "heldar-test-secret-key-0123456789abcdef"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """One local Ray for the whole test session (it takes ~6 s to start); yields the namespace."""
    import ray

    namespace = f"heldar-test-{uuid.uuid4().hex[:6]}"
    if not ray.is_initialized():
        ray.init(
            namespace=namespace,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            num_cpus=4,
            runtime_env={"env_vars": {"HELDAR_SECRET_KEY": TEST_SECRET_KEY}},
        )
    yield namespace
    ray.shutdown()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
