"""Recording schedules, the pure part: weekly windows, midnight wrap, DST, transitions, what modes expect."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from heldar.schedules import (
    Schedule,
    UnknownZone,
    check_zone_name,
    clip,
    expected_recording,
    format_clock,
    is_within,
    keeps_footage,
    local_zone_name,
    next_recording_change,
    next_transition,
    parse_clock,
    recording_intervals,
    should_record,
    windows_between,
    within_soon,
)
from heldar.schedules.windows import offset_spans

BERLIN = "Europe/Berlin"
NY = "America/New_York"
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)  # type: ignore[misc]


def sched(days: set[int], start: str, end: str, tz: str = "UTC", enabled: bool = True) -> Schedule:
    return Schedule(frozenset(days), parse_clock(start), parse_clock(end, end=True), tz, enabled)


# --- clock parsing ------------------------------------------------------------------------------------


def test_clock_parsing_and_formatting() -> None:
    assert parse_clock("08:30") == 8 * 3600 + 1800
    assert parse_clock("23:59:59") == 86399
    assert parse_clock("24:00", end=True) == 86400
    for bad in ("24:00", "8:30", "12:60", "25:00", "12:00:60", "noon", "", "24:00:01"):
        with pytest.raises(ValueError):
            parse_clock(bad)
    with pytest.raises(ValueError):
        parse_clock("24:01", end=True)
    assert format_clock(8 * 3600 + 1800) == "08:30"
    assert format_clock(86399) == "23:59:59"
    assert format_clock(86400) == "24:00"


def test_schedule_refuses_empty_days_equal_times_and_unknown_zones() -> None:
    with pytest.raises(ValueError):
        sched(set(), "08:00", "09:00")
    with pytest.raises(ValueError):
        sched({7}, "08:00", "09:00")
    with pytest.raises(ValueError):
        sched({MON}, "08:00", "08:00")
    with pytest.raises(ValueError):
        sched({MON}, "00:00", "00:00")
    with pytest.raises(UnknownZone):
        sched({MON}, "08:00", "09:00", "Mars/Olympus")
    full = sched({MON}, "00:00", "24:00")
    assert full.end_s - full.start_s == 86400


# --- plain weeks ---------------------------------------------------------------------------------------


def test_same_day_window_is_half_open() -> None:
    s = [sched({MON, WED}, "08:00", "18:00")]  # 2026-11-30 is a Monday
    assert not is_within(s, utc(2026, 11, 30, 7, 59, 59))
    assert is_within(s, utc(2026, 11, 30, 8, 0, 0))
    assert is_within(s, utc(2026, 11, 30, 17, 59, 59))
    assert not is_within(s, utc(2026, 11, 30, 18, 0, 0))
    assert not is_within(s, utc(2026, 12, 1, 12))  # Tuesday
    assert is_within(s, utc(2026, 12, 2, 12))  # Wednesday
    got = windows_between(s, utc(2026, 11, 30), utc(2026, 12, 7))
    assert got == [(utc(2026, 11, 30, 8), utc(2026, 11, 30, 18)), (utc(2026, 12, 2, 8), utc(2026, 12, 2, 18))]


def test_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    s = [sched({FRI}, "22:00", "06:00")]  # 2026-12-04 is a Friday
    assert is_within(s, utc(2026, 12, 4, 23))
    assert is_within(s, utc(2026, 12, 5, 5, 59))  # Saturday morning: Friday's window
    assert not is_within(s, utc(2026, 12, 5, 22, 30))  # Saturday night: no window
    assert not is_within(s, utc(2026, 12, 4, 5))  # Friday morning: Thursday had no window
    got = windows_between(s, utc(2026, 11, 30), utc(2026, 12, 14))
    assert got == [(utc(2026, 12, 4, 22), utc(2026, 12, 5, 6)), (utc(2026, 12, 11, 22), utc(2026, 12, 12, 6))]
    # Sunday's wrap runs into Monday (weekday 6 → 0).
    sun = [sched({SUN}, "23:00", "01:00")]
    assert is_within(sun, utc(2026, 11, 30, 0, 30))  # Monday 00:30
    assert windows_between(sun, utc(2026, 11, 30), utc(2026, 11, 30, 12)) == [(utc(2026, 11, 30), utc(2026, 11, 30, 1))]


def test_touching_windows_merge_so_a_recorder_is_never_restarted_between_them() -> None:
    weekend = [sched({SAT}, "00:00", "24:00"), sched({SUN}, "00:00", "24:00")]
    assert windows_between(weekend, utc(2026, 11, 30), utc(2026, 12, 7)) == [(utc(2026, 12, 5), utc(2026, 12, 7))]
    chained = [sched({MON}, "22:00", "06:00"), sched({TUE}, "06:00", "10:00")]
    assert windows_between(chained, utc(2026, 11, 30), utc(2026, 12, 2)) == [
        (utc(2026, 11, 30, 22), utc(2026, 12, 1, 10))
    ]
    assert next_transition(chained, utc(2026, 11, 30, 23)) == utc(2026, 12, 1, 10)


def test_disabled_schedules_and_clipping_to_the_query() -> None:
    s = [sched({MON}, "08:00", "18:00", enabled=False), sched({MON}, "12:00", "13:00")]
    assert not is_within(s, utc(2026, 11, 30, 9))
    assert windows_between(s, utc(2026, 11, 30, 12, 30), utc(2026, 11, 30, 20)) == [
        (utc(2026, 11, 30, 12, 30), utc(2026, 11, 30, 13))
    ]
    assert windows_between(s, utc(2026, 11, 30, 20), utc(2026, 11, 30, 12)) == []
    assert windows_between([], utc(2026, 11, 30), utc(2026, 12, 30)) == []


def test_seconds_in_windows() -> None:
    s = [sched({MON}, "08:00:10", "08:00:40")]
    assert not is_within(s, utc(2026, 11, 30, 8, 0, 9, 999999))
    assert is_within(s, utc(2026, 11, 30, 8, 0, 10))
    assert windows_between(s, utc(2026, 11, 30), utc(2026, 12, 1)) == [
        (utc(2026, 11, 30, 8, 0, 10), utc(2026, 11, 30, 8, 0, 40))
    ]


def test_next_transition() -> None:
    s = [sched({MON}, "08:00", "18:00")]
    assert next_transition(s, utc(2026, 11, 30, 7)) == utc(2026, 11, 30, 8)
    assert next_transition(s, utc(2026, 11, 30, 8)) == utc(2026, 11, 30, 18)
    assert next_transition(s, utc(2026, 11, 30, 18)) == utc(2026, 12, 7, 8)
    assert next_transition([], utc(2026, 11, 30)) is None
    always = [sched(set(range(7)), "00:00", "24:00")]
    assert next_transition(always, utc(2026, 11, 30, 3)) is None


# --- time zones and DST ------------------------------------------------------------------------------


def test_windows_are_read_in_the_schedule_zone() -> None:
    s = [sched({MON}, "08:00", "18:00", BERLIN)]  # CET = UTC+1 in winter
    assert windows_between(s, utc(2026, 11, 30), utc(2026, 12, 1)) == [(utc(2026, 11, 30, 7), utc(2026, 11, 30, 17))]
    summer = windows_between(s, utc(2026, 6, 1), utc(2026, 6, 2))  # CEST = UTC+2
    assert summer == [(utc(2026, 6, 1, 6), utc(2026, 6, 1, 16))]


def test_spring_forward_skipped_local_times_cover_nothing() -> None:
    # Berlin, Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    jump = utc(2026, 3, 29, 1)
    across = [sched({SUN}, "01:30", "02:30", BERLIN)]
    assert windows_between(across, utc(2026, 3, 28), utc(2026, 3, 30)) == [(local(BERLIN, 2026, 3, 29, 1, 30), jump)]
    inside_gap = [sched({SUN}, "02:15", "02:45", BERLIN)]
    assert windows_between(inside_gap, utc(2026, 3, 28), utc(2026, 3, 30)) == []
    assert not is_within(inside_gap, jump)
    opens_in_gap = [sched({SUN}, "02:30", "04:00", BERLIN)]
    assert windows_between(opens_in_gap, utc(2026, 3, 28), utc(2026, 3, 30)) == [(jump, local(BERLIN, 2026, 3, 29, 4))]
    assert is_within(opens_in_gap, jump) and not is_within(opens_in_gap, jump - timedelta(seconds=1))
    # The night is an hour shorter: 22:00-06:00 lasts seven real hours.
    night = [sched({SAT}, "22:00", "06:00", BERLIN)]
    ((start, end),) = windows_between(night, utc(2026, 3, 28), utc(2026, 3, 30))
    assert end - start == timedelta(hours=7)


def test_fall_back_repeated_local_times_are_inside_both_times() -> None:
    # Berlin, Sunday 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC).
    twice = [sched({SUN}, "02:00", "02:30", BERLIN)]
    got = windows_between(twice, utc(2026, 10, 24), utc(2026, 10, 26))
    assert got == [(utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30)), (utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30))]
    assert is_within(twice, utc(2026, 10, 25, 0, 15)) and is_within(twice, utc(2026, 10, 25, 1, 15))
    assert not is_within(twice, utc(2026, 10, 25, 0, 45))
    spanning = [sched({SUN}, "01:00", "03:00", BERLIN)]
    ((start, end),) = windows_between(spanning, utc(2026, 10, 24), utc(2026, 10, 26))
    assert (start, end) == (local(BERLIN, 2026, 10, 25, 1), local(BERLIN, 2026, 10, 25, 3))
    assert end - start == timedelta(hours=3)
    assert next_transition(twice, utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 25, 1)


def test_new_york_transitions_and_offset_spans() -> None:
    spans = offset_spans(ZoneInfo(NY), utc(2026, 3, 7), utc(2026, 3, 10))
    assert [s[2] for s in spans] == [timedelta(hours=-5), timedelta(hours=-4)]
    assert spans[0][1] == utc(2026, 3, 8, 7)  # 02:00 EST
    s = [sched({SUN}, "01:00", "04:00", NY)]
    ((start, end),) = windows_between(s, utc(2026, 3, 7), utc(2026, 3, 10))
    assert end - start == timedelta(hours=2)


@pytest.mark.parametrize("zone", [BERLIN, NY, "Australia/Lord_Howe", "UTC"])
def test_is_within_and_windows_between_agree_around_dst(zone: str) -> None:
    rng = random.Random(zone)
    schedules = [
        sched({SUN}, "01:30", "02:30", zone),
        sched({SAT}, "23:00", "02:15", zone),
        sched({SUN, MON}, "02:10:05", "03:20", zone),
        sched({WED}, "10:00", "11:00", zone),
    ]
    for start in (utc(2026, 3, 28), utc(2026, 10, 24), utc(2026, 4, 4), utc(2026, 3, 7), utc(2026, 10, 31)):
        end = start + timedelta(days=3)
        windows = windows_between(schedules, start, end)
        for a, b in itertools.pairwise(windows):
            assert a[1] < b[0]  # merged, sorted, disjoint
        probes = [start + timedelta(seconds=rng.uniform(0, 3 * 86400)) for _ in range(1500)]
        probes += [w[0] for w in windows] + [w[1] - timedelta(microseconds=1) for w in windows]
        probes += [w[1] for w in windows if w[1] < end]
        for at in probes:
            expected = any(a <= at < b for a, b in windows)
            assert is_within(schedules, at) == expected, (zone, at)


def test_zone_names(tmp_path: Path) -> None:
    assert check_zone_name(BERLIN) == BERLIN
    for bad in ("", "Nowhere/City", "../etc/passwd", "/etc/localtime", " UTC"):
        with pytest.raises(UnknownZone):
            check_zone_name(bad)
    assert local_zone_name({"TZ": "Asia/Tokyo"}, tmp_path) == "Asia/Tokyo"
    assert local_zone_name({"TZ": ":Europe/Paris"}, tmp_path) == "Europe/Paris"
    assert local_zone_name({"TZ": "/usr/share/zoneinfo/America/Chicago"}, tmp_path) == "America/Chicago"
    (tmp_path / "timezone").write_text("Europe/Lisbon\n")
    assert local_zone_name({}, tmp_path) == "Europe/Lisbon"
    assert local_zone_name({"TZ": "garbage"}, tmp_path) == "Europe/Lisbon"
    (tmp_path / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Oslo")
    assert local_zone_name({}, tmp_path) == "Europe/Oslo"
    assert local_zone_name({}, tmp_path / "missing") == "UTC"


# --- what the modes mean ---------------------------------------------------------------------------------


def test_should_record_by_mode_starts_early_and_stops_at_the_end() -> None:
    s = [sched({MON}, "08:00", "09:00")]
    assert should_record("continuous", [], utc(2026, 11, 30, 3))
    assert should_record("event", [], utc(2026, 11, 30, 3))
    assert should_record("scheduled_event", s, utc(2026, 11, 30, 3))  # armed outside windows
    assert not should_record("scheduled", s, utc(2026, 11, 30, 7, 59, 39))
    assert should_record("scheduled", s, utc(2026, 11, 30, 7, 59, 41))  # within the 20 s start-early lead
    assert should_record("scheduled", s, utc(2026, 11, 30, 8, 59, 59))
    assert not should_record("scheduled", s, utc(2026, 11, 30, 9))
    assert not should_record("scheduled", s, utc(2026, 11, 30, 7, 59, 59), lead_s=0)
    assert not should_record("scheduled", [], utc(2026, 11, 30, 8, 30))
    # A break shorter than the lead keeps the recorder running.
    split = [sched({MON}, "08:00", "09:00"), sched({MON}, "09:00:10", "10:00")]
    assert within_soon(split, utc(2026, 11, 30, 9, 0, 5), 15)


def test_keeps_footage_and_expected_recording() -> None:
    s = [sched({MON}, "08:00", "09:00")]
    assert keeps_footage("continuous", s, utc(2026, 11, 30, 3), utc(2026, 11, 30, 3, 0, 2))
    assert keeps_footage("scheduled", s, utc(2026, 11, 30, 3), utc(2026, 11, 30, 3, 0, 2))
    assert not keeps_footage("event", s, utc(2026, 11, 30, 8), utc(2026, 11, 30, 8, 0, 2))
    assert keeps_footage("scheduled_event", s, utc(2026, 11, 30, 8, 30), utc(2026, 11, 30, 8, 30, 2))
    assert keeps_footage("scheduled_event", s, utc(2026, 11, 30, 7, 59, 59), utc(2026, 11, 30, 8, 0, 1))
    assert not keeps_footage("scheduled_event", s, utc(2026, 11, 30, 9), utc(2026, 11, 30, 9, 0, 2))
    created = utc(2026, 11, 30, 8, 30)
    day = (utc(2026, 11, 30), utc(2026, 12, 1))
    assert expected_recording("scheduled", s, created, *day) == [(created, utc(2026, 11, 30, 9))]
    assert expected_recording("scheduled", s, None, *day) == [(utc(2026, 11, 30, 8), utc(2026, 11, 30, 9))]
    assert expected_recording("continuous", s, created, *day) == [(created, day[1])]
    assert expected_recording("continuous", s, utc(2026, 12, 2), *day) == []


def test_clip() -> None:
    allowed = [(utc(2026, 1, 1, 8), utc(2026, 1, 1, 9)), (utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))]
    hole = [(utc(2026, 1, 1, 8, 30), utc(2026, 1, 1, 10, 15))]
    assert clip(hole, allowed) == [
        (utc(2026, 1, 1, 8, 30), utc(2026, 1, 1, 9)),
        (utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 15)),
    ]
    assert clip([(utc(2026, 1, 1, 9), utc(2026, 1, 1, 10))], allowed) == []


def test_recording_intervals_and_next_recording_change_agree_with_should_record() -> None:
    s = [sched({MON}, "08:00", "09:00"), sched({MON}, "09:00:10", "10:00"), sched({TUE}, "08:00", "08:00:05")]
    day = (utc(2026, 11, 30), utc(2026, 12, 2))
    assert recording_intervals("scheduled", s, *day) == [
        (utc(2026, 11, 30, 7, 59, 40), utc(2026, 11, 30, 10)),
        (utc(2026, 12, 1, 7, 59, 40), utc(2026, 12, 1, 8, 0, 5)),
    ]
    assert recording_intervals("continuous", s, *day) == [day]
    assert next_recording_change("scheduled", s, utc(2026, 11, 30, 3)) == utc(2026, 11, 30, 7, 59, 40)
    assert next_recording_change("scheduled", s, utc(2026, 11, 30, 8)) == utc(2026, 11, 30, 10)
    assert next_recording_change("continuous", s, utc(2026, 11, 30, 8)) is None
    assert should_record("scheduled", s, utc(2026, 11, 30, 7, 59, 40))
    assert not should_record("scheduled", s, utc(2026, 11, 30, 7, 59, 39, 999999))
    rng = random.Random(7)
    for _ in range(500):
        at = day[0] + timedelta(seconds=rng.uniform(0, 2 * 86400))
        inside = any(a <= at < b for a, b in recording_intervals("scheduled", s, *day))
        assert should_record("scheduled", s, at) == inside, at


def test_clip_gaps_keeps_in_window_parts_longer_than_the_seam() -> None:
    from heldar.coverage import Gap, clip_gaps

    expected = [(utc(2026, 1, 1, 8), utc(2026, 1, 1, 9)), (utc(2026, 1, 1, 10), utc(2026, 1, 1, 11))]
    gaps = [
        Gap(utc(2026, 1, 1, 7), utc(2026, 1, 1, 8, 0, 2)),  # only 2 s inside: a seam, dropped
        Gap(utc(2026, 1, 1, 8, 30), utc(2026, 1, 1, 10, 30)),  # spans both windows
        Gap(utc(2026, 1, 1, 10, 50), utc(2026, 1, 1, 12), open_ended=True),  # runs past the window's end
    ]
    assert clip_gaps(gaps, expected, min_gap_s=2) == [
        Gap(utc(2026, 1, 1, 8, 30), utc(2026, 1, 1, 9)),
        Gap(utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 30)),
        Gap(utc(2026, 1, 1, 10, 50), utc(2026, 1, 1, 11), open_ended=False),
    ]
    tail = [Gap(utc(2026, 1, 1, 10, 50), utc(2026, 1, 1, 11), open_ended=True)]
    assert clip_gaps(tail, expected)[0].open_ended
    assert clip_gaps(gaps, []) == []
