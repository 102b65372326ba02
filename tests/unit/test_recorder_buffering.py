"""CameraRecorder's bounded buffering while its sink (the database) is down, through its seams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heldar.models.cameras import Camera
from heldar.recording.camera_recorder import FLUSH_MAX_SEGMENTS, CameraRecorder, RecorderOptions, fold_status
from heldar.recording.records import EventRecord, RecordingBatch, SegmentRecord, StatusChange


class Sink:
    def __init__(self) -> None:
        self.up = False
        self.batches: list[RecordingBatch] = []

    async def write(self, batch: RecordingBatch) -> None:
        if not self.up:
            raise ConnectionError("database down")
        self.batches.append(batch)

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]:
        return {}


def _recorder(tmp_path: Path, sink: Sink, max_pending: int = 10) -> CameraRecorder:
    camera = Camera(id="cam", name="cam", main_stream_url="rtsp://127.0.0.1/x")
    return CameraRecorder(camera, RecorderOptions(recordings_root=tmp_path, max_pending=max_pending), sink)


def _segment(i: int) -> SegmentRecord:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=2 * i)
    return SegmentRecord(f"{i:05d}.mp4", start, start + timedelta(seconds=2), 2.0, 1000)


def test_fold_status_keeps_the_newest_values_and_sums_reconnects() -> None:
    folded = fold_status([
        StatusChange(state="offline", last_error="boom", last_error_code="timeout", reconnects=1, clear_pid=True),
        StatusChange(recorder_pid=42),
        StatusChange(state="recording", clear_error=True),
        StatusChange(state="offline", last_error_code="refused", reconnects=1),
    ])  # fmt: skip
    assert folded.state == "offline" and folded.reconnects == 2
    assert folded.recorder_pid == 42 and not folded.clear_pid
    assert folded.last_error_code == "refused" and folded.last_error is None and not folded.clear_error


def test_events_beyond_the_bound_are_dropped_and_counted(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path, Sink(), max_pending=10)
    for i in range(25):
        recorder._queue_event(EventRecord("camera_offline", payload={"i": i}))
        recorder._queue_status(StatusChange(state="offline", reconnects=1))
    assert len(recorder.pending.events) == 10 and recorder.dropped_events == 15
    assert [e.payload["i"] for e in recorder.pending.events] == list(range(15, 25))  # the newest are kept
    assert len(recorder.pending.status) <= 10
    assert sum(c.reconnects for c in recorder.pending.status) == 25  # folding loses no reconnect
    assert recorder.health()["dropped_events"] == 15


@pytest.mark.asyncio
async def test_a_backlog_is_written_in_bounded_batches_when_the_sink_returns(tmp_path: Path) -> None:
    sink = Sink()
    recorder = _recorder(tmp_path, sink, max_pending=10_000)
    total = FLUSH_MAX_SEGMENTS * 2 + 7
    for i in range(total):
        recorder.pending.segments.append(_segment(i))
        recorder.pending_names[_segment(i).file_name] = 1000
    recorder._queue_event(EventRecord("camera_offline"))
    assert not await recorder.flush()
    assert len(recorder.pending.segments) == total  # nothing lost while down
    sink.up = True
    assert await recorder.flush()
    assert [len(b.segments) for b in sink.batches] == [FLUSH_MAX_SEGMENTS, FLUSH_MAX_SEGMENTS, 7]
    written = [s.file_name for b in sink.batches for s in b.segments]
    assert written == sorted(written) and len(set(written)) == total  # oldest first, each once
    assert sum(len(b.events) for b in sink.batches) == 1
    assert len(recorder.indexed) == total and recorder.pending.empty


@pytest.mark.asyncio
async def test_backoff_sleep_keeps_the_heartbeat_fresh(tmp_path: Path) -> None:
    import time

    recorder = _recorder(tmp_path, Sink())
    recorder.heartbeat = time.monotonic() - 100
    await recorder._sleep(1.5)
    assert time.monotonic() - recorder.heartbeat < 0.5
    assert recorder.health()["backing_off_s"] is None


@pytest.mark.asyncio
async def test_a_finished_runs_header_only_file_is_removed_and_footage_kept(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path, Sink())
    folder = tmp_path / "cam"
    folder.mkdir()
    header_only = folder / "20260101T000000Z_aaaaaaaa01.mp4"
    header_only.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 700)
    big_junk = folder / "20260101T000002Z_aaaaaaaa01.mp4"
    big_junk.write_bytes(b"\x00" * 50_000)  # unreadable but too big to be only a header: kept for a person
    recorder.run_id = "bbbbbbbb02"  # a later run is recording now
    await recorder.index_once(recorder_running=False)
    assert not header_only.exists()
    assert big_junk.exists()


@pytest.mark.asyncio
async def test_a_full_scan_forgets_names_no_listing_shows_again(tmp_path: Path) -> None:
    """The indexer's memory of indexed files follows the recent day folders, not all footage ever kept."""
    from heldar.media.segment_names import day_dir_name, segment_name

    sink = Sink()
    recorder = _recorder(tmp_path, sink)
    now = datetime.now(UTC)
    today = tmp_path / "cam" / day_dir_name(now)
    today.mkdir(parents=True)
    recent = segment_name(now - timedelta(minutes=5), "runa")
    (today / recent).write_bytes(b"x" * 10)
    old_day = now - timedelta(days=5)
    old = segment_name(old_day, "runb")
    recorder.indexed.update({recent: 10, old: 10})  # e.g. loaded at start, or indexed days ago
    recorder._known_loaded = True
    recorder._last_full_scan = 0.0  # a full scan is due
    await recorder.index_once(recorder_running=False)
    assert recorder.indexed == {recent: 10}
