"""Media-job slots: clip exports, recorded snapshots and live grabs share a small number of permits.

A request that cannot get a permit within ``wait_s`` (10 s) is refused with :class:`MediaBusy` (the API
answers 503 + ``Retry-After``). The recorder never takes one: it runs in other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from heldar.errors import Unavailable

logger = logging.getLogger(__name__)

SLOT_WAIT_S = 10.0


class MediaBusy(Unavailable):
    """Every media-job slot stayed busy for the whole wait."""


class MediaJobSlots:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._sem = asyncio.Semaphore(slots)
        self.busy = 0

    @contextlib.asynccontextmanager
    async def slot(self, wait_s: float | None = None) -> AsyncIterator[None]:
        wait_s = SLOT_WAIT_S if wait_s is None else wait_s
        try:
            await asyncio.wait_for(self._sem.acquire(), wait_s)
        except TimeoutError:
            logger.warning("media jobs: all %d slots busy for %.0f s; refusing", self.slots, wait_s)
            raise MediaBusy(f"all {self.slots} media-job slots are busy; retry shortly") from None
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._sem.release()
