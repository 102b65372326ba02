"""A recorder with real ffmpeg and the simulator, without Ray or a database: how it learns of new segments.

With the folder watch (inotify) a running recorder never lists its folders between its start and its end; without
it (``watch_folders=False``, or no inotify) it lists, and both index the same footage."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from pathlib import Path

import pytest

from heldar.models.cameras import Camera
from heldar.recording import camera_recorder
from heldar.recording.camera_recorder import CameraRecorder, RecorderOptions
from heldar.recording.folder_watch import IN_Q_OVERFLOW, folder_watch
from heldar.recording.records import RecordingBatch

pytestmark = pytest.mark.integration

SEGMENT_S = 2


class Sink:
    def __init__(self) -> None:
        self.segments: list = []

    async def write(self, batch: RecordingBatch) -> None:
        self.segments.extend(batch.segments)

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]:
        return {}


class Listings:
    """Counts the recorder's folder listings (the real function does the work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = camera_recorder.list_segment_files

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(camera_recorder, "list_segment_files", counted)


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def _record(sim, root: Path, camera_id: str, listings: Listings, watch: bool, steady_s: float):  # type: ignore[no-untyped-def]
    sim.add_camera(camera_id)
    camera = Camera(id=camera_id, name=camera_id, main_stream_url=sim.url(camera_id), segment_seconds=SEGMENT_S)
    sink = Sink()
    recorder = CameraRecorder(camera, RecorderOptions(recordings_root=root, flush_interval_s=0.2,
                                                      watch_folders=watch), sink)  # fmt: skip
    task = asyncio.create_task(recorder.run())
    try:
        await _until(lambda: len(sink.segments) >= 1, 30, "the first indexed segment")
        before, indexed_before = listings.calls, len(sink.segments)
        await asyncio.sleep(steady_s)
        steady_listings = listings.calls - before
        assert len(sink.segments) >= indexed_before + steady_s / SEGMENT_S - 2, "segments kept being indexed"
    finally:
        recorder.stop()
        await asyncio.wait_for(task, 30)
    return recorder, sink, steady_listings


def _check_footage(sink: Sink) -> None:
    segs = sorted(sink.segments, key=lambda s: s.start)
    assert len({s.file_name for s in segs}) == len(segs), "each segment indexed once"
    assert all(s.sha256 and len(s.sha256) == 64 for s in segs)
    for a, b in itertools.pairwise(segs):
        # no hole (a run's first files may overlap a little: their names are wall-clock seconds)
        assert (b.start - a.end).total_seconds() < 0.5, f"a hole between {a.file_name} and {b.file_name}"


@pytest.mark.asyncio
async def test_a_watched_recorder_indexes_every_segment_without_listing(sim, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    listings = Listings(monkeypatch)
    recorder, sink, steady = await _record(sim, tmp_path, "watched", listings, True, 4 * SEGMENT_S)
    assert folder_watch() is not None, "inotify is there on Linux"
    assert steady == 0, "no listing while the folder watch tells of each new and closed file"
    assert recorder._closed_told_ever
    _check_footage(sink)


@pytest.mark.asyncio
async def test_without_the_watch_the_recorder_lists_and_indexes_the_same(sim, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    listings = Listings(monkeypatch)
    recorder, sink, steady = await _record(sim, tmp_path, "polled", listings, False, 4 * SEGMENT_S)
    assert steady >= 4, "the polling recorder lists to find each new file"
    assert not recorder._closed_told_ever
    _check_footage(sink)


@pytest.mark.asyncio
async def test_lost_events_make_a_watched_recorder_list_once(sim, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    listings = Listings(monkeypatch)
    sim.add_camera("overflow")
    camera = Camera(id="overflow", name="overflow", main_stream_url=sim.url("overflow"), segment_seconds=SEGMENT_S)
    sink = Sink()
    recorder = CameraRecorder(camera, RecorderOptions(recordings_root=tmp_path, flush_interval_s=0.2), sink)
    task = asyncio.create_task(recorder.run())
    try:
        await _until(lambda: len(sink.segments) >= 1, 30, "the first indexed segment")
        before = listings.calls
        watch = folder_watch()
        assert watch is not None
        watch.dispatch(struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0))
        await _until(lambda: listings.calls >= before + 2, 10, "a listing by the record loop and the indexer")
        count = len(sink.segments)
        await _until(lambda: len(sink.segments) > count, 10, "indexing going on after the overflow")
    finally:
        recorder.stop()
        await asyncio.wait_for(task, 30)
    _check_footage(sink)
