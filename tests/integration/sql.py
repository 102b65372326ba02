"""One SQL helper for tests: run a query on a database URL from synchronous test code."""

from __future__ import annotations

import asyncio
from typing import Any

from heldar.store.database import connect


def sql(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of ``query`` (parameterised with ``args``) as dicts, on a fresh connection."""

    async def run() -> list[dict[str, Any]]:
        conn = await connect(url)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())
