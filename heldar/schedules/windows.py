"""Weekly recording windows: when a schedule is open, as UTC instants.

A schedule is a set of weekdays (0 = Monday … 6 = Sunday), a start and an end local wall-clock time (to
the second; an end of ``24:00`` means midnight at the end of the day) and the IANA zone it is read in.

* ``start < end``: the window is ``[start, end)`` on each listed day.
* ``start > end``: it wraps past midnight; the hours after midnight belong to the *previous* day's window
  (days ``[4]`` 22:00-06:00 is Friday 22:00 to Saturday 06:00).

**The rule.** An instant is inside a schedule when its local wall-clock reading (weekday, time of day)
falls inside one of that schedule's windows. Everything here follows from that one rule, so it also says
what happens at DST changes:

* spring forward (the clock jumps 02:00 → 03:00): local times that never happen cover no instant; a
  window 01:30-02:30 closes at the jump, a window 02:15-02:45 is empty that night, and one starting at
  02:30 opens at the jump;
* fall back (03:00 → 02:00): local times that happen twice are inside both times, so a window
  01:00-03:00 lasts three real hours that night, and a window 02:00-02:30 opens twice.

``is_within`` applies the rule to one instant; ``windows_between`` gives the same answer as merged UTC
intervals (touching windows are joined, so Saturday 00:00-24:00 plus Sunday 00:00-24:00 is one interval);
``next_transition`` is the next instant at which the answer changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from heldar.schedules.zone import zone

DAY_S = 86400
HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)

_CLOCK_RE = re.compile(r"^(?P<h>[01]\d|2[0-4]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?$")

Interval = tuple[datetime, datetime]


def parse_clock(text: str, *, end: bool = False) -> int:
    """``"HH:MM"`` or ``"HH:MM:SS"`` → seconds after midnight; ``"24:00"`` only as an ``end``."""
    match = _CLOCK_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError("time must be HH:MM or HH:MM:SS (24-hour clock)")
    seconds = int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"] or 0)
    if seconds > DAY_S or (seconds == DAY_S and not end):
        raise ValueError("24:00 is allowed only as an end time" if seconds == DAY_S else "time past 24:00")
    return seconds


def format_clock(seconds: int) -> str:
    """Seconds after midnight → ``"HH:MM"``, or ``"HH:MM:SS"`` when the seconds are not zero."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" if s == 0 else f"{h:02d}:{m:02d}:{s:02d}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One weekly window set. ``start_s`` in 0..86399, ``end_s`` in 0..86400, never equal."""

    days: frozenset[int]
    start_s: int
    end_s: int
    tz: str = "UTC"
    enabled: bool = True
    id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.days or any(d not in range(7) for d in self.days):
            raise ValueError("days must be a non-empty set of weekdays 0 (Monday) to 6 (Sunday)")
        if not 0 <= self.start_s < DAY_S or not 0 <= self.end_s <= DAY_S:
            raise ValueError("start must be in 00:00..23:59:59 and end in 00:00..24:00")
        if self.start_s == self.end_s % DAY_S and not (self.start_s == 0 and self.end_s == DAY_S):
            raise ValueError("start and end must differ")
        zone(self.tz)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.tz)

    @property
    def wraps(self) -> bool:
        return self.end_s < self.start_s

    def contains_local(self, weekday: int, second_of_day: float) -> bool:
        """The rule on a local wall-clock reading."""
        if not self.wraps:
            return weekday in self.days and self.start_s <= second_of_day < self.end_s
        return (weekday in self.days and second_of_day >= self.start_s) or (
            (weekday - 1) % 7 in self.days and second_of_day < self.end_s
        )

    def local_windows(self, first: date, last: date) -> list[tuple[datetime, datetime]]:
        """Naive local ``[open, close)`` of every window opening on a day from ``first`` to ``last``."""
        out = []
        day = first
        while day <= last:
            if day.weekday() in self.days:
                midnight = datetime.combine(day, time())
                close_day = midnight if not self.wraps else midnight + timedelta(days=1)
                out.append((midnight + timedelta(seconds=self.start_s), close_day + timedelta(seconds=self.end_s)))
            day += timedelta(days=1)
        return out


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return at.astimezone(UTC)


def _offset(tz: ZoneInfo, at: datetime) -> timedelta:
    offset = at.astimezone(tz).utcoffset()
    assert offset is not None
    return offset


def offset_spans(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, datetime, timedelta]]:
    """``[a, b)`` UTC spans covering ``[start, end)``, each with the one UTC offset in force throughout.

    Offsets are sampled hourly and each change is bisected to the second (zones never change twice within
    an hour)."""
    spans: list[tuple[datetime, datetime, timedelta]] = []
    cursor, current = start, _offset(tz, start)
    probe = start
    while probe < end:
        nxt = min(probe + HOUR, end)
        offset = _offset(tz, nxt)
        if offset != current:
            lo, hi = probe, nxt  # offset(lo) == current, offset(hi) != current
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if _offset(tz, mid) == current:
                    lo = mid
                else:
                    hi = mid
            whole = hi.replace(microsecond=0)
            change = whole if whole > lo and _offset(tz, whole) != current else hi
            spans.append((cursor, change, current))
            cursor, current = change, _offset(tz, change)
        probe = nxt
    if cursor < end:
        spans.append((cursor, end, current))
    return spans


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals; touching or overlapping ones joined, empty ones dropped."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _enabled(schedules: Iterable[Schedule]) -> list[Schedule]:
    return [s for s in schedules if s.enabled]


def is_within(schedules: Iterable[Schedule], at: datetime) -> bool:
    """Whether ``at`` (aware) lies inside a window of an enabled schedule."""
    instant = _aware(at)
    for sched in _enabled(schedules):
        local = instant.astimezone(sched.zone)
        second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        if sched.contains_local(local.weekday(), second):
            return True
    return False


def windows_between(schedules: Iterable[Schedule], start: datetime, end: datetime) -> list[Interval]:
    """The open windows of the enabled schedules inside ``[start, end)`` as merged UTC intervals."""
    lo, hi = _aware(start), _aware(end)
    if hi <= lo:
        return []
    found: list[Interval] = []
    for sched in _enabled(schedules):
        tz = sched.zone
        for a, b, offset in offset_spans(tz, lo, hi):
            local_a = (a + offset).replace(tzinfo=None)
            local_b = (b + offset).replace(tzinfo=None)
            for open_, close in sched.local_windows(local_a.date() - timedelta(days=1), local_b.date()):
                s, e = max(open_, local_a), min(close, local_b)
                if e > s:
                    found.append(((s - offset).replace(tzinfo=UTC), (e - offset).replace(tzinfo=UTC)))
    return merge(found)


def next_transition(
    schedules: Sequence[Schedule], at: datetime, horizon: timedelta = WEEK + timedelta(days=1)
) -> datetime | None:
    """The first instant after ``at`` at which ``is_within`` changes; None when it stays the same for
    ``horizon`` (no enabled schedule, or windows that cover the whole week)."""
    now = _aware(at)
    limit = now + horizon
    for start, end in windows_between(schedules, now, limit):
        if start > now:
            return start
        if end < limit:
            return end
    return None


def within_soon(schedules: Iterable[Schedule], at: datetime, lead_s: float) -> bool:
    """Whether a window is open at any instant of ``[at, at + lead_s)`` (``lead_s`` 0: just ``at``)."""
    if lead_s <= 0:
        return is_within(schedules, at)
    listed = list(schedules)
    return is_within(listed, at) or bool(windows_between(listed, at, at + timedelta(seconds=lead_s)))


def clip(intervals: Iterable[Interval], allowed: Sequence[Interval]) -> list[Interval]:
    """The parts of ``intervals`` that lie inside ``allowed`` (both lists of ``[start, end)``)."""
    allowed = merge(allowed)
    out: list[Interval] = []
    for start, end in merge(intervals):
        for a, b in allowed:
            if b <= start:
                continue
            if a >= end:
                break
            out.append((max(start, a), min(end, b)))
    return out
