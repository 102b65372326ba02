from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from heldar.coverage import (
    Gap,
    Range,
    coverage_gaps,
    coverage_ratio,
    detect_new_gap,
    merge_ranges,
    recorded_seconds,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seg(a: float, b: float) -> tuple[datetime, datetime]:
    return (t(a), t(b))


def test_merge_empty_and_single() -> None:
    assert merge_ranges([]) == []
    assert merge_ranges([seg(0, 10)]) == [Range(t(0), t(10))]
    assert merge_ranges([seg(0, 10)])[0].seconds == 10.0


def test_merge_unsorted_overlapping_and_seams() -> None:
    ranges = merge_ranges([seg(20, 30), seg(0, 10), seg(5, 8), seg(12, 19), seg(40, 50), seg(9, 11)])
    # 0-11 (overlaps), seam 1 s to 12-19, seam 1 s to 20-30, seam 10 s, 40-50
    assert ranges == [Range(t(0), t(30)), Range(t(40), t(50))]


def test_merge_exact_seam_is_joined_and_longer_is_not() -> None:
    assert merge_ranges([seg(0, 10), seg(12, 20)]) == [Range(t(0), t(20))]
    assert merge_ranges([seg(0, 10), seg(12.001, 20)]) == [Range(t(0), t(10)), Range(t(12.001), t(20))]
    assert merge_ranges([seg(0, 10), seg(10.5, 20)], join_seam_s=0) == [
        Range(t(0), t(10)),
        Range(t(10.5), t(20)),
    ]


def test_merge_ignores_empty_and_inverted_and_accepts_objects() -> None:
    @dataclass
    class Row:
        start: datetime
        end: datetime

    ranges = merge_ranges([Row(t(0), t(5)), seg(7, 7), seg(9, 8), Range(t(6), t(9))])
    assert ranges == [Range(t(0), t(9))]


def test_gaps_no_segments_is_one_open_hole() -> None:
    assert coverage_gaps([], t(0), t(60)) == [Gap(t(0), t(60), open_ended=True)]


def test_gaps_leading_inner_trailing() -> None:
    gaps = coverage_gaps([seg(10, 20), seg(22, 30), seg(40, 50)], t(0), t(60))
    assert gaps == [
        Gap(t(0), t(10)),
        Gap(t(30), t(40)),
        Gap(t(50), t(60), open_ended=True),
    ]
    assert [g.seconds for g in gaps] == [10.0, 10.0, 10.0]


def test_gaps_exactly_two_second_seams_are_not_gaps() -> None:
    segments = [seg(2, 10), seg(12, 20), seg(22, 28)]
    assert coverage_gaps(segments, t(0), t(30)) == []
    assert coverage_gaps(segments, t(0), t(30.5)) == [Gap(t(28), t(30.5), open_ended=True)]


def test_window_entirely_inside_one_segment() -> None:
    assert coverage_gaps([seg(0, 100)], t(10), t(20)) == []
    assert recorded_seconds([seg(0, 100)], t(10), t(20)) == 10.0
    assert coverage_ratio([seg(0, 100)], t(10), t(20)) == 1.0


def test_segments_partially_outside_window() -> None:
    segments = [seg(-30, 5), seg(50, 90)]
    assert coverage_gaps(segments, t(0), t(60)) == [Gap(t(5), t(50))]
    assert recorded_seconds(segments, t(0), t(60)) == 15.0
    # a segment wholly outside the window changes nothing
    assert coverage_gaps([*segments, seg(100, 200)], t(0), t(60)) == [Gap(t(5), t(50))]


def test_overlapping_segments_counted_once() -> None:
    segments = [seg(0, 10), seg(5, 15), seg(5, 15), seg(14, 20)]
    assert recorded_seconds(segments, t(0), t(30)) == 20.0
    assert coverage_gaps(segments, t(0), t(30)) == [Gap(t(20), t(30), open_ended=True)]
    assert coverage_ratio(segments, t(0), t(40)) == pytest.approx(0.5)


def test_min_gap_and_empty_window() -> None:
    segments = [seg(0, 10), seg(15, 20)]
    assert coverage_gaps(segments, t(0), t(20), min_gap_s=5.0) == []
    assert coverage_gaps(segments, t(0), t(20), min_gap_s=4.9) == [Gap(t(10), t(15))]
    assert coverage_gaps(segments, t(10), t(10)) == []
    assert coverage_gaps(segments, t(20), t(10)) == []
    assert recorded_seconds(segments, t(20), t(10)) == 0.0
    assert coverage_ratio(segments, t(20), t(10)) == 0.0


def test_recorded_seconds_does_not_fill_seams() -> None:
    assert recorded_seconds([seg(0, 10), seg(12, 20)], t(0), t(20)) == 18.0


def test_detect_new_gap() -> None:
    assert detect_new_gap(None, t(100)) is None
    assert detect_new_gap(t(0), t(3)) is None  # exactly 3 s: a seam
    assert detect_new_gap(t(0), t(3.5)) == (t(0), t(3.5))
    assert detect_new_gap(t(10), t(5)) is None  # overlap: indexer clamps, no gap
    assert detect_new_gap(t(0), t(2), threshold_s=1.0) == (t(0), t(2))


def test_live_edge_only_while_recording_recently() -> None:
    from datetime import UTC, datetime, timedelta

    from heldar.coverage import live_edge

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    last = now - timedelta(seconds=8)
    edge = live_edge("recording", last, now, segment_seconds=10)
    assert edge is not None and edge.start == last and edge.end == now
    assert live_edge("offline", last, now, segment_seconds=10) is None
    assert live_edge("recording", now - timedelta(seconds=40), now, segment_seconds=10) is None
    assert live_edge("recording", None, now, segment_seconds=10) is None
