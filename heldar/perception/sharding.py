"""Sharding AI tasks across the live workers of one credential (upstream contract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

WORKER_LIVE_S = 60.0


def shard(items: Sequence[T], live_workers: Sequence[str], worker_id: str | None) -> list[T]:
    """Task *i* (in the given order, by task id) goes to ``sorted(live)[i mod n]``.

    An unknown worker, or an empty live set, gets **all** tasks: duplicated work beats stalled work.
    """
    live = sorted(set(live_workers))
    if not worker_id or worker_id not in live:
        return list(items)
    n, index = len(live), live.index(worker_id)
    return [item for i, item in enumerate(items) if i % n == index]
