"""Session lifetime rules: absolute TTL, optional idle cut-off, debounced ``last_used_at`` writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

TOUCH_DEBOUNCE = timedelta(minutes=1)


@dataclass(frozen=True)
class SessionPolicy:
    ttl_hours: float = 12.0
    idle_timeout_min: float = 0.0  # 0: no idle cut-off

    @property
    def ttl(self) -> timedelta:
        return timedelta(hours=self.ttl_hours)

    @property
    def max_age_s(self) -> int:
        """Cookie Max-Age in whole seconds (at least 1)."""
        return max(1, int(self.ttl.total_seconds()))

    def expires_at(self, now: datetime) -> datetime:
        return now + self.ttl

    @property
    def touch_debounce(self) -> timedelta:
        """How stale ``last_used_at`` may get: a minute, or less when the idle cut-off is short."""
        if self.idle_timeout_min > 0:
            return min(TOUCH_DEBOUNCE, timedelta(minutes=self.idle_timeout_min) / 4)
        return TOUCH_DEBOUNCE

    def is_valid(self, expires_at: datetime, last_used_at: datetime, now: datetime) -> bool:
        if expires_at <= now:
            return False
        return not (self.idle_timeout_min > 0 and now - last_used_at > timedelta(minutes=self.idle_timeout_min))

    def should_touch(self, last_used_at: datetime | None, now: datetime) -> bool:
        return last_used_at is None or now - last_used_at >= self.touch_debounce


def should_touch_key(last_used_at: datetime | None, now: datetime) -> bool:
    """API keys record use at most once a minute."""
    return last_used_at is None or now - last_used_at >= TOUCH_DEBOUNCE
