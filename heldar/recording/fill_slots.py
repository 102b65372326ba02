"""Cluster-wide limit on concurrent ANR fills: leases with expiry, so a holder that dies frees its slot."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SlotLease:
    lease_id: str
    holder: str
    expires_at: float


class FillSlots:
    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._clock = clock
        self._leases: dict[str, SlotLease] = {}
        self.peak = 0

    def _expire(self) -> None:
        now = self._clock()
        for lease_id in [k for k, v in self._leases.items() if v.expires_at <= now]:
            del self._leases[lease_id]

    def try_acquire(self, holder: str, ttl_s: float) -> str | None:
        """A lease id when a slot is free, else None. The lease lapses after ``ttl_s``."""
        self._expire()
        if len(self._leases) >= self.capacity:
            return None
        lease = SlotLease(secrets.token_hex(8), holder, self._clock() + ttl_s)
        self._leases[lease.lease_id] = lease
        self.peak = max(self.peak, len(self._leases))
        return lease.lease_id

    def release(self, lease_id: str) -> bool:
        return self._leases.pop(lease_id, None) is not None

    @property
    def in_use(self) -> int:
        self._expire()
        return len(self._leases)

    def holders(self) -> list[str]:
        self._expire()
        return sorted(lease.holder for lease in self._leases.values())
