"""Login lockout policy: N consecutive failures lock an account for M minutes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lockout_minutes: float = 15.0

    @property
    def enabled(self) -> bool:
        """Either setting at 0 turns lockout off."""
        return self.max_failures > 0 and self.lockout_minutes > 0

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.lockout_minutes)

    def is_locked(self, locked_until: datetime | None, now: datetime) -> bool:
        return locked_until is not None and locked_until > now

    def next_state(
        self, failed_count: int, locked_until: datetime | None, now: datetime
    ) -> tuple[int, datetime | None]:
        """(count, locked_until) after one more failure on an account that is not locked now.

        A lock that has run out starts the count afresh. The store applies the same rule in one
        atomic UPDATE; this function documents it and is what the unit tests pin down.
        """
        count = (0 if locked_until is not None else failed_count) + 1
        if self.enabled and count >= self.max_failures:
            return count, now + self.duration
        return count, None
