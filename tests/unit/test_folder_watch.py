"""The folder watch (inotify): what a recorder learns from the kernel instead of listing its folder."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from heldar.recording.camera_recorder import WATCHED_RELIST_EVERY_S, RunFiles
from heldar.recording.folder_watch import IN_CLOSE_WRITE, IN_CREATE, IN_Q_OVERFLOW, FolderWatch, parse_events


async def _settle() -> None:
    for _ in range(20):  # the loop reads the descriptor when it is readable: give it a few turns
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_created_and_closed_files_are_told_per_folder(tmp_path: Path) -> None:
    watch = FolderWatch(asyncio.get_running_loop())
    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other"
    for d in (a, b, other):
        d.mkdir()
    seen_a: list[tuple[str, str]] = []
    seen_b: list[tuple[str, str]] = []
    also_a: list[tuple[str, str]] = []
    token_a = watch.watch(a, lambda kind, name: seen_a.append((kind, name)))
    watch.watch(b, lambda kind, name: seen_b.append((kind, name)))
    token_also = watch.watch(a, lambda kind, name: also_a.append((kind, name)))  # two listeners, one folder
    try:
        with (a / "one.mp4").open("wb") as f:
            f.write(b"x" * 1000)
            await _settle()
            assert seen_a == [("created", "one.mp4")]  # open for writing: created, not closed yet
        (other / "ignored.mp4").write_bytes(b"x")
        (tmp_path / "moved.part").write_bytes(b"x")
        (tmp_path / "moved.part").rename(b / "moved.mp4")
        (a / "sub").mkdir()  # folders are not files
        await _settle()
        assert seen_a == [("created", "one.mp4"), ("closed", "one.mp4")]
        assert also_a == seen_a
        assert seen_b == [("created", "moved.mp4")]
        watch.unwatch(token_a)
        (a / "two.mp4").write_bytes(b"x")
        await _settle()
        assert len(seen_a) == 2 and also_a[-1] == ("closed", "two.mp4")  # the other listener still hears
        watch.unwatch(token_also)
        assert watch.watched_folders == 1
    finally:
        watch.close()


@pytest.mark.asyncio
async def test_a_removed_folder_drops_its_watch_and_a_missing_one_refuses(tmp_path: Path) -> None:
    watch = FolderWatch(asyncio.get_running_loop())
    try:
        day = tmp_path / "2026-01-01"
        day.mkdir()
        token = watch.watch(day, lambda kind, name: None)
        day.rmdir()  # retention removed an old day
        await _settle()
        assert watch.watched_folders == 0
        watch.unwatch(token)  # harmless after the kernel dropped it
        with pytest.raises(OSError):
            watch.watch(tmp_path / "missing", lambda kind, name: None)
    finally:
        watch.close()


@pytest.mark.asyncio
async def test_an_overflow_is_told_to_every_listener_and_a_failing_listener_does_not_stop_the_rest(
    tmp_path: Path,
) -> None:
    watch = FolderWatch(asyncio.get_running_loop())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    told: list[str] = []

    def broken(kind: str, name: str) -> None:
        raise RuntimeError("listener bug")

    try:
        watch.watch(tmp_path / "a", broken)
        watch.watch(tmp_path / "b", lambda kind, name: told.append(kind))
        watch.dispatch(struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0))  # what the kernel sends when events were lost
        assert told == ["overflow"] and watch.overflows == 1
    finally:
        watch.close()


def test_parse_events_reads_padded_names() -> None:
    name = b"20260101T000000Z_abc.mp4"
    padded = name + b"\0" * (32 - len(name))
    data = struct.pack("iIII", 3, IN_CREATE, 0, len(padded)) + padded + struct.pack("iIII", 3, IN_CLOSE_WRITE, 0, 0)
    assert parse_events(data) == [(3, IN_CREATE, name.decode()), (3, IN_CLOSE_WRITE, "")]


def test_a_watched_run_lists_at_its_start_after_lost_events_and_rarely_otherwise(tmp_path: Path) -> None:
    files = RunFiles(10, watched=True)
    assert files.needs_listing(0.0, 0.0)  # nothing known yet
    files.listed(0.0, [])
    assert not files.needs_listing(1.0, 1e12)  # past the cut time: the watch tells of the next file
    files.still_polls = 10
    assert not files.needs_listing(2.0, 1e12)  # not growing is the watchdog's business, not a listing's
    assert files.needs_listing(WATCHED_RELIST_EVERY_S + 1, 0.0)
    files.listed(WATCHED_RELIST_EVERY_S + 1, [])
    files.relist = True  # an overflow, or the current file vanished
    assert files.needs_listing(WATCHED_RELIST_EVERY_S + 2, 0.0)


def test_a_new_file_of_the_run_becomes_the_current_one(tmp_path: Path) -> None:
    files = RunFiles(10, watched=True)
    first = tmp_path / "20260101T000000Z_run.mp4"
    second = tmp_path / "20260101T000010Z_run.mp4"
    assert files.created(first)
    files.current_bytes = 500
    assert files.created(second)
    assert files.current == second and files.closed_bytes == 500 and files.current_bytes == 0
    assert not files.created(second)  # told twice (a listing saw it too)
    assert not files.created(first)  # a late notice of an older file does not step back
    assert files.current == second and files.total_bytes == 500


@pytest.mark.asyncio
async def test_where_inotify_fails_the_loop_gets_no_watch_and_asks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from heldar.recording import folder_watch as module

    calls = []

    def refuse(loop: asyncio.AbstractEventLoop) -> FolderWatch:
        calls.append(loop)
        raise OSError(24, "inotify_init1: Too many open files")  # the per-user instance limit

    monkeypatch.setattr(module, "FolderWatch", refuse)
    loop = asyncio.get_running_loop()
    before = module._WATCHES.pop(loop, "absent")
    try:
        assert module.folder_watch() is None
        assert module.folder_watch() is None
        assert len(calls) == 1  # remembered for this loop: recorders list their folders
    finally:  # the loop may outlive this test: give it back the watch it had
        module._WATCHES.pop(loop, None)
        if before != "absent":
            module._WATCHES[loop] = before  # type: ignore[assignment]
