"""One read per notification burst for every open event stream of a process (security F11).

Every stream wakes on the same notifications; instead of each stream querying the rows it was told about,
the first one to ask fetches them (unfiltered, once) and every other stream awaits that same read and filters
in memory with ``matches``, the Python twin of ``heldar.store.event_reads._where``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from heldar.store.event_reads import EventFilter

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

Fetch = Callable[[list[int]], Awaitable[list[dict[str, Any]]]]


def matches(f: EventFilter, row: dict[str, Any]) -> bool:
    """Whether ``row`` passes ``f`` (same rules as the SQL filter)."""
    camera_id = row.get("camera_id")
    if f.camera_id is not None and camera_id != f.camera_id:
        return False
    if f.event_type is not None and row.get("event_type") != f.event_type:
        return False
    if f.severity is not None and row.get("severity") != f.severity:
        return False
    if SEVERITY_RANK.get(row.get("severity") or "", 0) < SEVERITY_RANK.get(f.min_severity or "info", 0):
        return False
    ts = row.get("timestamp")
    if f.start is not None and (ts is None or ts < f.start):
        return False
    if f.end is not None and (ts is None or ts > f.end):
        return False
    return not (f.camera_scope is not None and camera_id not in f.camera_scope)


class SharedEventRows:
    """Rows by seq, each fetched from the database once per process while it is recent."""

    def __init__(self, fetch: Fetch, *, keep: int = 4096) -> None:
        self._fetch = fetch
        self._keep = keep
        self._rows: OrderedDict[int, dict[str, Any] | None] = OrderedDict()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self.queries = 0  # reads issued (for tests and metrics)

    async def rows(self, seqs: Sequence[int], f: EventFilter) -> list[dict[str, Any]]:
        """The rows named by ``seqs`` that pass ``f``, in seq order."""
        wanted = sorted(set(seqs))
        missing = [s for s in wanted if s not in self._rows and s not in self._pending]
        if missing:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for s in missing:
                self._pending[s] = done
            try:
                self.queries += 1
                found = {r["seq"]: r for r in await self._fetch(missing)}
                for s in missing:
                    self._rows[s] = found.get(s)
                while len(self._rows) > self._keep:
                    self._rows.popitem(last=False)
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("read cancelled"))
                done.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
                raise
            finally:
                for s in missing:
                    self._pending.pop(s, None)
        for s in wanted:
            waiter = self._pending.get(s)
            if waiter is not None:
                await asyncio.shield(waiter)
        out = []
        for s in wanted:
            row = self._rows.get(s)
            if row is None and s not in self._rows:  # evicted meanwhile (a huge burst): read it alone
                self.queries += 1
                got = await self._fetch([s])
                row = got[0] if got else None
            if row is not None and matches(f, row):
                out.append(row)
        return out
