"""SQL that (re-)seals every stored secret in place: camera passwords, webhook secrets, the frame-ticket key.

Run at every start with a key: clear values (stored before ``HELDAR_SECRET_KEY`` was set) and values sealed
under ``HELDAR_SECRET_KEY_PREVIOUS`` are sealed under the current key, row by row under a row lock, in one
transaction per table, so a concurrent start or edit never sees a half-done table.
"""

from __future__ import annotations

import logging

import asyncpg

from heldar.models.cameras import CAMERA_PASSWORD
from heldar.secrets import Sealer, is_sealed
from heldar.store.perception import FRAME_TICKET_KEY
from heldar.store.webhooks import WEBHOOK_SECRET

logger = logging.getLogger(__name__)

# (table, key column, value column, sealing purpose, bytea?)
SEALED_COLUMNS = (
    ("cameras", "id", "password", CAMERA_PASSWORD, False),
    ("webhook_subscriptions", "id", "secret", WEBHOOK_SECRET, False),
    ("perception_secrets", "name", "value", FRAME_TICKET_KEY, True),
)


def _reseal(sealer: Sealer, value: str | bytes, purpose: str, binary: bool) -> str | bytes:
    if binary:
        raw = bytes(value) if not isinstance(value, str) else value.encode()
        plain = sealer.open(raw.decode(), purpose) if is_sealed(raw) else raw
        return sealer.seal(plain, purpose).encode()
    text = str(value)
    plain_text = sealer.open(text, purpose).decode() if is_sealed(text) else text
    return sealer.seal(plain_text.encode(), purpose)


async def reseal_all(pool: asyncpg.Pool, sealer: Sealer) -> dict[str, int]:
    """Seal every clear or previous-key value under the current key; {table: rows re-sealed}."""
    done: dict[str, int] = {}
    if not sealer.enabled:
        return done
    for table, key, column, purpose, binary in SEALED_COLUMNS:
        count = 0
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {key} AS k, {column} AS v FROM {table} WHERE {column} IS NOT NULL FOR UPDATE"
            )
            for row in rows:
                value = bytes(row["v"]) if binary else row["v"]
                if sealer.needs_reseal(value):
                    await conn.execute(
                        f"UPDATE {table} SET {column} = $2 WHERE {key} = $1", row["k"],
                        _reseal(sealer, value, purpose, binary),
                    )  # fmt: skip
                    count += 1
        done[table] = count
    return done


async def count_clear(pool: asyncpg.Pool) -> int:
    """Stored secrets that are not sealed (for the start-up warning)."""
    total = 0
    for table, _, column, _, binary in SEALED_COLUMNS:
        rows = await pool.fetch(f"SELECT {column} AS v FROM {table} WHERE {column} IS NOT NULL")
        total += sum(1 for r in rows if not is_sealed(bytes(r["v"]) if binary else r["v"]))
    return total
