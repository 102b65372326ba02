from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from heldar.media.segment_names import (
    SegmentFile,
    backfill_name,
    closed_segments,
    format_start,
    list_segment_files,
    new_backfill_token,
    new_run_id,
    parse_segment_name,
    run_total_bytes,
    segment_name,
    segment_pattern,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_new_run_ids_are_unique_increasing_and_valid() -> None:
    ids = [new_run_id() for _ in range(300)]
    assert len(set(ids)) == len(ids)
    prefixes = [i[:8] for i in ids]
    assert prefixes == sorted(prefixes) and len(set(prefixes)) == len(prefixes)
    for run_id in ids[:50]:
        assert len(run_id) == 10 and run_id.isalnum() and run_id == run_id.lower()
        assert not run_id.startswith("anr")
        assert parse_segment_name(segment_name(T0, run_id)) is not None


def test_pattern_is_strftime_with_literal_run_and_escaped_dir(tmp_path: Path) -> None:
    camera_dir = tmp_path / "cam%d 1"
    pattern = segment_pattern(camera_dir, "abc123")
    assert pattern == os.path.join(
        str(tmp_path).replace("%", "%%"), "cam%%d 1", "%Y-%m-%d", "%Y%m%dT%H%M%SZ_abc123.mp4"
    )
    expanded = T0.strftime(pattern)
    assert expanded == str(camera_dir / "2026-01-02" / "20260102T030405Z_abc123.mp4")
    with pytest.raises(ValueError):
        segment_pattern(camera_dir, "ABC%")
    with pytest.raises(ValueError):
        segment_pattern(camera_dir, "")


def test_parse_round_trip_and_rejects() -> None:
    parsed = parse_segment_name("20260102T030405Z_abc123.mp4")
    assert parsed is not None
    assert parsed.start == T0 and parsed.start.tzinfo is UTC
    assert parsed.run_id == "abc123" and not parsed.is_backfill
    for junk in [
        "20260102T030405Z_abc123.mp4.part",
        "20260102T030405Z_abc123.mp4.tmp",
        ".20260102T030405Z_abc123.mp4",
        "20260102_030405.mp4",  # upstream naming
        "20260102T030405Z.mp4",
        "20260102T030405Z_ABC.mp4",
        "20260102T030405Z_ab-c.mp4",
        "20261302T030405Z_abc.mp4",  # month 13
        "20260102T250405Z_abc.mp4",
        "20260102T030405Z_abc.mkv",
        "x20260102T030405Z_abc.mp4",
        "20260102T030405Z_" + "a" * 33 + ".mp4",
        "",
        "notes.txt",
    ]:
        assert parse_segment_name(junk) is None, junk


def test_backfill_name_floors_to_second_and_is_marked() -> None:
    start = T0 + timedelta(microseconds=999_000)
    token = new_backfill_token()
    assert token.startswith("anr") and len(token) == 9
    name = backfill_name(start, token)
    assert name == f"20260102T030405Z_{token}.mp4"
    parsed = parse_segment_name(name)
    assert parsed is not None and parsed.is_backfill and parsed.start == T0
    # non-UTC aware input is converted; naive input is refused
    plus2 = timezone(timedelta(hours=2))
    assert backfill_name(T0.astimezone(plus2), "anr1") == "20260102T030405Z_anr1.mp4"
    with pytest.raises(ValueError):
        backfill_name(datetime(2026, 1, 2, 3, 4, 5), "anr1")
    with pytest.raises(ValueError):
        backfill_name(T0, "abc")
    assert format_start(T0) == "20260102T030405Z"


def _touch(path: Path, size: int, mtime: float) -> None:
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


def test_list_segment_files_sorted_filtered(tmp_path: Path) -> None:
    assert list_segment_files(tmp_path / "missing") == []
    now = time.time()
    _touch(tmp_path / "20260102T030407Z_bbb.mp4", 30, now)
    _touch(tmp_path / "20260102T030405Z_bbb.mp4", 10, now)
    _touch(tmp_path / "20260102T030405Z_aaa.mp4", 20, now)
    _touch(tmp_path / "20260102T030409Z_anr00ff00.mp4.part", 5, now)
    _touch(tmp_path / "junk.mp4", 5, now)
    (tmp_path / "20260102T030410Z_ddd.mp4").mkdir()
    (tmp_path / "20260102T030411Z_eee.mp4").symlink_to(tmp_path / "junk.mp4")
    files = list_segment_files(tmp_path)
    assert [f.name for f in files] == [
        "20260102T030405Z_aaa.mp4",
        "20260102T030405Z_bbb.mp4",
        "20260102T030407Z_bbb.mp4",
    ]
    assert [f.size_bytes for f in files] == [20, 10, 30]
    assert files[0].path == tmp_path / "20260102T030405Z_aaa.mp4"
    assert files[0].mtime == pytest.approx(now, abs=1e-3)
    assert run_total_bytes(files, "bbb") == 40
    assert run_total_bytes(files, "zzz") == 0


def _seg(second: int, run: str, mtime: float) -> SegmentFile:
    return SegmentFile(
        path=Path(f"/r/2026010203{second:04d}Z_{run}.mp4"),
        start=T0 + timedelta(seconds=second),
        run_id=run,
        size_bytes=1,
        mtime=mtime,
    )


def test_closed_segments_rules() -> None:
    now = 1000.0
    old_run = [_seg(0, "old", 900.0), _seg(2, "old", 999.0)]  # newest of a dead run: closed
    cur = [_seg(4, "cur", 999.0), _seg(6, "cur", 999.5)]
    backfill = [_seg(1, "anr0a", 999.9)]
    files = sorted(old_run + cur + backfill, key=lambda f: (f.start, f.name))

    closed = closed_segments(files, current_run_id="cur", now=now, open_grace_s=5.0)
    assert cur[1] not in closed
    assert closed == [f for f in files if f is not cur[1]]

    # recorder not running: everything is closed
    assert closed_segments(files, current_run_id=None, now=now, open_grace_s=5.0) == files
    # newest file of the running run went quiet for longer than the grace: closed too
    assert closed_segments(files, current_run_id="cur", now=now + 10, open_grace_s=5.0) == files
    # current run has not written anything yet
    assert closed_segments(files, current_run_id="new", now=now, open_grace_s=5.0) == files
    assert closed_segments([], current_run_id="cur", now=now, open_grace_s=5.0) == []


def test_closed_segments_same_second_restart() -> None:
    # Two runs started within the same second: only the current run's newest file is open.
    a = _seg(0, "aaaa", 999.0)
    b = _seg(0, "bbbb", 999.9)
    closed = closed_segments([a, b], current_run_id="aaaa", now=1000.0, open_grace_s=5.0)
    assert closed == [b]


def test_list_segment_files_filters_names_before_stat(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from heldar.media.segment_names import list_segment_files

    for name in ("20260101T000000Z_runa.mp4", "20260101T000002Z_runa.mp4", "20260101T000004Z_runb.mp4"):
        (tmp_path / name).write_bytes(b"x" * 10)
    only_b = list_segment_files(tmp_path, lambda n: n.endswith("_runb.mp4"))
    assert [f.name for f in only_b] == ["20260101T000004Z_runb.mp4"]
    assert len(list_segment_files(tmp_path)) == 3


def test_day_folders_and_flat_layout_both_resolve(tmp_path: Path) -> None:
    from heldar.media.segment_names import day_dirs, ensure_day_dirs, recent_days, segment_path

    cam = tmp_path / "cam"
    made = ensure_day_dirs(cam, T0)
    assert [p.name for p in made] == ["2026-01-02", "2026-01-03"]
    dated = segment_name(T0, "abc")
    (cam / "2026-01-02" / dated).write_bytes(b"x")
    flat = segment_name(T0.replace(hour=1), "old")
    (cam / flat).write_bytes(b"yy")
    assert segment_path(cam, dated) == cam / "2026-01-02" / dated
    assert segment_path(cam, flat) == cam / flat
    assert segment_path(cam, segment_name(T0, "nothere")).parent.name == "2026-01-02"
    assert {f.name for f in list_segment_files(cam)} == {dated, flat}
    # Limiting the day folders still reads the flat one; an absent day folder is simply empty.
    assert {f.name for f in list_segment_files(cam, days=["2026-01-03", "2025-12-31"])} == {flat}
    assert day_dirs(cam) == ["2026-01-02", "2026-01-03"]
    assert recent_days(T0, 2) == ["2026-01-01", "2026-01-02"]
    from heldar.media.segment_names import active_days

    assert active_days(T0) == ["2026-01-02"]  # 03:04 UTC
    assert active_days(T0.replace(hour=0, minute=5)) == ["2026-01-01", "2026-01-02"]
