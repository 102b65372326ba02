"""Everything one camera's recorder does, without Ray: ffmpeg supervision, indexing, status.

``CameraRecorder.run()`` keeps three tasks going until ``stop()``:

* **record**: start ffmpeg (stream copy into segments), watch its output bytes, and when the run ends
  (exit, or killed by the stall watchdog) classify why, publish the cause, wait a backoff, start again;
* **index**: probe and hash closed segment files and turn them into ``SegmentRecord``s;
* **flush**: hand everything pending to the ``RecordingSink`` in one batch; on failure keep it and retry,
  so a database or supervisor outage loses nothing (the files are on disk, the batch in memory).

Only the record loop ticks (every ``poll_interval_s``, on the same beat for every recorder of a process, so a
recorder host wakes once per tick for all its cameras); the other two sleep until there is work (issue 18: a
recorder's wake-ups are most of its CPU). Each tick stats the run's current file. Where the kernel has inotify
(:mod:`heldar.recording.folder_watch`) it says when ffmpeg creates a file of the run (the new current file) and
closes one (the indexer probes that file, with no listing); the run's folders are listed at its start, after lost
events, and every ``WATCHED_RELIST_EVERY_S``. Without it the record loop lists the run's day folder when the
current file is due to be cut or stopped growing, and every ``RELIST_EVERY_S``, and a new file wakes the
indexer for a listing pass. The end of a run wakes it too; it also passes every ``INDEX_IDLE_S`` (watched:
``WATCHED_INDEX_IDLE_S``) for files no run watches (back-fill, leftovers of earlier runs, a late write).
Anything queued wakes the flusher, which gathers for ``flush_interval_s`` and writes one batch.

The camera actor is a thin Ray shell around this class; tests drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from heldar.aio import raise_if_cancelled, wait_set
from heldar.media.binary import ffmpeg_exe
from heldar.media.ffmpeg_errors import StopCause, classify_exit
from heldar.media.integrity import file_sha256_or_none
from heldar.media.probe import SegmentProbe, StreamCodecMemo, probe_segment
from heldar.media.recorder_command import RecorderSpec, build_recorder_argv, recorder_env
from heldar.media.segment_names import (
    SegmentFile,
    active_days,
    closed_segments,
    day_dir_name,
    ensure_day_dirs,
    list_segment_files,
    new_run_id,
    recent_days,
    segment_file_at,
)
from heldar.models.cameras import Camera
from heldar.recorder_policy import ProgressWatchdog, ReconnectBackoff
from heldar.recording.folder_watch import FolderWatch, folder_watch
from heldar.recording.records import EventRecord, RecordingBatch, SegmentRecord, StatusChange

logger = logging.getLogger(__name__)

# Causes that retrying will not fix: the camera's configuration or credentials are wrong.
CONFIGURATION_CAUSES = frozenset({"unauthorized", "not_found", "codec"})
# A first segment whose file-name time is this close behind the previous segment's end of the same
# run continues it exactly (names carry whole seconds; durations are exact).
RUN_CHAIN_TOLERANCE_S = 1.2
# A finished run's file smaller than this that holds no readable video is only a header: it is removed.
EMPTY_SEGMENT_BYTES = 4096
# A closed file that still cannot be probed after this long is skipped for good (logged once).
UNPROBEABLE_GIVE_UP_S = 120.0
# Below this much free space on the recordings filesystem no ffmpeg run is started (cause ``disk_full``);
# the record loop re-checks every DISK_RECHECK_S and resumes by itself once space returns.
DISK_FULL_BELOW_BYTES = 64 * 1024 * 1024
DISK_RECHECK_S = 5.0
# How often the indexer also re-checks files it already indexed (a late write re-probes them).
FULL_SCAN_EVERY_S = 60.0
# Segments written per sink call; a backlog (after a database outage) goes out in batches of this size.
FLUSH_MAX_SEGMENTS = 500
# Longest single sleep of the record loop: its heartbeat stays fresh while it waits out a backoff.
HEARTBEAT_SLICE_S = 1.0
# The record loop lists the run's folder when the current file has not grown for this many polls, and at least
# this often; otherwise a tick is one stat of the current file.
RELIST_AFTER_STILL_POLLS = 2
RELIST_EVERY_S = 30.0
# The indexer's pass when nothing woke it (back-fill files, leftovers, late writes): at least this far apart.
INDEX_IDLE_S = 10.0
# With the folder watch (inotify) the kernel says when a file of the run appears and closes: the run's folder is
# listed once at the start and then only this often (or after lost events), and the indexer's listing pass and
# its re-stat of two days of footage are rarer. A listing reads the whole day folder: these are the costs that
# grow with the footage kept.
WATCHED_RELIST_EVERY_S = 300.0
WATCHED_INDEX_IDLE_S = 60.0
WATCHED_FULL_SCAN_EVERY_S = 600.0


def probe_and_hash(path: Path) -> tuple[SegmentProbe | None, str | None]:
    """A closed file's probe and, when it holds video, its SHA-256 (the integrity chain's input): one thread hop
    for both."""
    probe = probe_segment(path)
    return probe, (file_sha256_or_none(path) if probe is not None else None)


def until_next_tick(interval_s: float) -> float:
    """Seconds to the next multiple of ``interval_s`` on the event loop's clock: every recorder of a process
    polls at the same instant, so the loop wakes once per interval for all of them (one warm pass instead of one
    cold wake-up per camera)."""
    if interval_s <= 0:
        return 0.0
    left = interval_s - asyncio.get_running_loop().time() % interval_s
    return left if left > interval_s / 20 else left + interval_s  # a wake a hair early does not tick twice


STOP_MESSAGES = {
    "stopped": "recorder stopped by the supervisor (camera removed or disabled)",
    "heldar_stopped": "heldar was stopped",
    "standby": "this supervisor lost its database lock to another one",
}


def fold_status(changes: list[StatusChange]) -> StatusChange:
    """Many status changes as one: the newest value of each field wins, a later clear wins over an earlier
    value (and the other way round), reconnects add up."""
    merged: dict[str, Any] = {}
    reconnects = 0
    clears = {"clear_error": ("last_error", "last_error_code"), "clear_pid": ("recorder_pid",)}
    for change in changes:
        reconnects += change.reconnects
        for flag, fields in clears.items():
            if getattr(change, flag):
                merged[flag] = True
                for name in fields:
                    merged.pop(name, None)
        for name in change.__dataclass_fields__:
            value = getattr(change, name)
            if name == "reconnects" or name in clears or value is None:
                continue
            merged[name] = value
            for flag, fields in clears.items():
                if name in fields:
                    merged[flag] = False
    return StatusChange(reconnects=reconnects, **merged)


class RecordingSink(Protocol):
    async def write(self, batch: RecordingBatch) -> None: ...

    async def indexed_sizes(self, camera_id: str, file_names: list[str]) -> dict[str, int]: ...


@dataclass(frozen=True)
class RecorderOptions:
    recordings_root: Path
    rtsp_timeout_s: float = 5.0
    indexer_interval_s: float = 2.0
    flush_interval_s: float = 1.0
    poll_interval_s: float = 1.0
    recent_window_s: float = 60.0
    startup_timeout_s: float = 20.0
    max_pending: int = 2000  # events/status kept while the sink is down; segments are re-read from disk
    disk_full_below_bytes: int = DISK_FULL_BELOW_BYTES
    live_root: Path | None = None  # live HLS as a second output of the same stream copy (media plane)
    watch_folders: bool = True  # learn of new and closed segments from inotify where there is one (else list)


class RunFiles:
    """The bytes one ffmpeg run has written, kept up to date with one ``stat`` per poll.

    A listing of the run's files gives the closed files' bytes and the newest (current) file; between listings
    only the current file is stat'ed. A listing is due once the current file is ``segment_seconds`` old by its
    name (ffmpeg cuts at the first keyframe after that, so until the next file shows up every poll lists), when it
    has not grown for ``RELIST_AFTER_STILL_POLLS`` polls (a cut earlier than expected, or a stall), when no file is
    known yet, and every ``RELIST_EVERY_S`` (a file of the run removed or re-written meanwhile)."""

    def __init__(self, segment_seconds: float = 60.0, *, watched: bool = False) -> None:
        self.segment_seconds = segment_seconds
        self.watched = watched  # the folder watch reports new files (created()); list only now and then
        self.relist = False  # events were lost or the current file vanished: list at the next poll
        self.closed_bytes = 0
        self.current: Path | None = None
        self.current_bytes = 0
        self.current_due = 0.0  # POSIX time at which the current file should be cut
        self.count = 0
        self.still_polls = 0
        self.listed_at: float | None = None

    @property
    def total_bytes(self) -> int:
        return self.closed_bytes + self.current_bytes

    def needs_listing(self, now: float, wall: float) -> bool:
        if self.watched:
            return self.listed_at is None or self.relist or now - self.listed_at >= WATCHED_RELIST_EVERY_S
        return (
            self.current is None
            or self.listed_at is None
            or wall >= self.current_due
            or self.still_polls >= RELIST_AFTER_STILL_POLLS
            or now - self.listed_at >= RELIST_EVERY_S
        )

    def listed(self, now: float, files: list[SegmentFile]) -> bool:
        """Take a listing of the run's files (sorted, as ``list_segment_files`` returns them); True when it
        holds more files than the last one (a segment closed)."""
        self.listed_at = now
        self.still_polls = 0
        self.relist = False
        grew = len(files) > 1 and len(files) > self.count
        self.count = len(files)
        if not files:
            self.closed_bytes, self.current, self.current_bytes = 0, None, 0
            return grew
        self.closed_bytes = sum(f.size_bytes for f in files[:-1])
        self.current, self.current_bytes = files[-1].path, files[-1].size_bytes
        self.current_due = files[-1].start.timestamp() + self.segment_seconds
        return grew

    def created(self, path: Path) -> bool:
        """The folder watch saw ``path``, a file of this run, appear: it is the current file now (the one before it
        is closed). True when it is new."""
        if self.current is not None and path.name <= self.current.name:  # names sort by start within a run
            return False
        if self.current is not None:
            self.closed_bytes += self.current_bytes
        self.current, self.current_bytes, self.still_polls = path, 0, 0
        self.count += 1
        return True

    def stat_current(self, now: float) -> None:
        """One ``stat`` of the current file (a local, cached metadata read; no folder listing)."""
        if self.current is None:
            return
        try:
            size = os.stat(self.current).st_size
        except OSError:
            self.still_polls = RELIST_AFTER_STILL_POLLS  # gone (retention, a rename): list again
            self.relist = True
            return
        if size != self.current_bytes:
            self.current_bytes = size
            self.still_polls = 0
        else:
            self.still_polls += 1


class CameraRecorder:
    def __init__(
        self,
        camera: Camera,
        options: RecorderOptions,
        sink: RecordingSink,
        *,
        spawn: Callable[[list[str], dict[str, str]], Awaitable[Any]] | None = None,
        startup_gap_cause: str | None = None,
    ) -> None:
        self.camera = camera
        self.options = options
        self.sink = sink
        self.camera_dir = options.recordings_root / camera.id
        self.node = socket.gethostname()
        self.backoff = ReconnectBackoff(recent_window_s=options.recent_window_s)
        self.stream_codecs = StreamCodecMemo()  # H.265 -> hvc1, G.711 -> AAC in the recorder's command
        self._spawn = spawn
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._index_wake = asyncio.Event()  # a file closed (or the run ended): index now
        self._index_listing = True  # the next pass lists (else it indexes only the files the folder watch closed)
        self._closed_told: list[Path] = []  # files of the run the folder watch saw closed, not indexed yet
        self._closed_told_ever = False  # the folder watch works here: the indexer's idle passes can be rarer
        self._flush_wake = asyncio.Event()  # something was queued: flush soon
        # recorder state
        self.state = "unknown"
        self.run_id: str | None = None
        self.ffmpeg: Any = None
        self.runs = 0
        self.reconnects = 0
        self.last_cause: StopCause | None = None
        self.last_healthy_mono: float | None = None
        self._last_published_code: str | None = None
        # why recording stopped, until a run records again; a fresh actor starts with the supervisor's word for
        # the time before it (heldar_stopped, heldar_crashed, failover, camera actor died, ...)
        self.pending_gap_cause: str | None = startup_gap_cause
        self.run_gap_cause: dict[str, str] = {}  # run id → cause of the outage before that run
        self.heartbeat = time.monotonic()
        self.sleeping_until: float | None = None  # monotonic end of the backoff the record loop is waiting out
        self.started_mono = time.monotonic()
        # indexer state
        self.indexed: dict[str, int] = {}
        self.unprobeable_since: dict[str, float] = {}
        self.run_cursor: dict[str, datetime] = {}
        self._known_loaded = False
        self._last_full_scan = 0.0
        # outgoing
        self.pending = RecordingBatch(camera.id)
        self.pending_names: dict[str, int] = {}
        self.flush_failures = 0
        self.last_flush_error: str | None = None
        self.dropped_events = 0  # events lost to the pending bound while the sink was down (counted, logged)
        self.deferred_index_passes = 0  # index passes skipped because the backlog was full (files stay on disk)
        self.stop_reason = "stopped"

    # --- public ---------------------------------------------------------------------------------
    async def run(self) -> None:
        self.camera_dir.mkdir(parents=True, exist_ok=True)
        tasks = [
            asyncio.create_task(self._record_loop(), name=f"record:{self.camera.id}"),
            asyncio.create_task(self._index_loop(), name=f"index:{self.camera.id}"),
            asyncio.create_task(self._flush_loop(), name=f"flush:{self.camera.id}"),
        ]
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._shutdown()

    def stop(self, reason: str = "stopped") -> None:
        """Stop recording; ``reason`` is the cause published with the final status (``stopped``: removed or
        disabled; ``reload``: a new recorder takes over at once, so no offline state is published)."""
        self.stop_reason = reason
        self._stopping.set()
        self._wake.set()
        self._index_wake.set()
        self._flush_wake.set()

    def wake_indexer(self) -> None:
        """Index now (e.g. an ANR back-fill file was just renamed into place) instead of at the idle pass."""
        self._index_listing = True
        self._index_wake.set()

    def update_camera(self, camera: Camera) -> None:
        """Take settings that need no new ffmpeg (name, retention, ANR, pre/post-roll) live."""
        if camera.id != self.camera.id:
            raise ValueError("a recorder records one camera")
        self.camera = camera

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "camera_id": self.camera.id,
            "state": self.state,
            "pid": self.ffmpeg.pid if self.ffmpeg is not None else None,
            "run_id": self.run_id,
            "runs": self.runs,
            "reconnects": self.reconnects,
            "loop_age_s": round(now - self.heartbeat, 3),
            "backing_off_s": None if self.sleeping_until is None else round(max(0.0, self.sleeping_until - now), 3),
            "since_healthy_s": None if self.last_healthy_mono is None else round(now - self.last_healthy_mono, 3),
            "last_cause": None if self.last_cause is None else self.last_cause.code,
            "last_error": None if self.last_cause is None else self.last_cause.message,
            "pending_segments": len(self.pending.segments),
            "flush_failures": self.flush_failures,
            "last_flush_error": self.last_flush_error,
            "dropped_events": self.dropped_events,
            "deferred_index_passes": self.deferred_index_passes,
            "indexed": len(self.indexed),
            "uptime_s": round(now - self.started_mono, 3),
        }

    # --- record loop ----------------------------------------------------------------------------
    async def _record_loop(self) -> None:
        while not self._stopping.is_set():
            raise_if_cancelled()
            self.heartbeat = time.monotonic()
            url = self.camera.record_url()
            if url is None:  # the registry refuses this, but a row edited by hand can get here
                self._set_state("error", code="config", message="camera has no stream URL to record")
                await self._sleep(30)
                continue
            if not await self._disk_has_room():
                await self._sleep(DISK_RECHECK_S)
                continue
            ran_s, produced, cause = await self._one_run(url)
            self.wake_indexer()  # the run's last file is closed now
            if self._stopping.is_set():
                break
            since = None if self.last_healthy_mono is None else time.monotonic() - self.last_healthy_mono
            delay = self.backoff.next_delay(ran_s, produced, since_healthy_s=since)
            self._after_run(cause, produced, ran_s, since)
            logger.info(
                "camera %s: ffmpeg stopped (%s: %s); retry in %.1fs",
                self.camera.id, cause.code, cause.message, delay,
            )  # fmt: skip
            await self._sleep(delay)

    async def _disk_has_room(self) -> bool:
        """False (and state ``error``/``disk_full``, one event) while the recordings disk is (nearly) full."""
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self.camera_dir)
        except OSError:
            return True  # cannot tell: let ffmpeg try (and report what goes wrong)
        if usage.free >= self.options.disk_full_below_bytes:
            return True
        if self._last_published_code != "disk_full":
            message = f"the recordings disk is full ({usage.free // (1024 * 1024)} MiB free); waiting for space"
            logger.warning("camera %s: %s", self.camera.id, message)
            if self.state == "recording":
                self.pending_gap_cause = f"disk_full: {message}"
            self._set_state("error", code="disk_full", message=message, stop_at=datetime.now(UTC))
            self._queue_event(
                EventRecord("disk_full", "critical", {"free_bytes": usage.free, "total_bytes": usage.total})
            )
        return False

    async def _one_run(self, url: str) -> tuple[float, bool, StopCause]:
        self.run_id = new_run_id()
        if self.pending_gap_cause:
            self.run_gap_cause[self.run_id] = self.pending_gap_cause
        codecs = await self.stream_codecs.get(url, self.camera.rtsp_transport, self.options.rtsp_timeout_s)
        spec = RecorderSpec(
            input_url=url,
            camera_dir=self.camera_dir,
            run_id=self.run_id,
            segment_seconds=self.camera.segment_seconds,
            rtsp_transport=self.camera.rtsp_transport,
            record_audio=self.camera.record_audio,
            timeout_s=self.options.rtsp_timeout_s,
            live_dir=self.options.live_root / self.camera.id if self.options.live_root else None,
            video_codec=codecs.video,
            audio_codec=codecs.audio,
        )
        if spec.live_dir is not None:
            await asyncio.to_thread(spec.live_dir.mkdir, parents=True, exist_ok=True)
        argv = build_recorder_argv(spec, ffmpeg_exe())
        run_day = ensured_day = day_dir_name(datetime.now(UTC))
        day_folders = await asyncio.to_thread(ensure_day_dirs, self.camera_dir, datetime.now(UTC))
        run_suffix = f"_{self.run_id}.mp4"
        watch = folder_watch() if self.options.watch_folders else None
        run_files = RunFiles(spec.effective_segment_seconds, watched=watch is not None)
        watched: dict[Path, int] = {}

        def unwatch_all() -> None:
            while watched and watch is not None:
                watch.unwatch(watched.popitem()[1])

        if watch is not None:  # before ffmpeg starts, so its first file is seen
            self._watch_run_folders(watch, watched, day_folders, run_files, run_suffix)
        if self.state not in ("offline", "error", "recording"):
            self._set_state("connecting")
        started = time.monotonic()
        self.runs += 1
        try:
            self.ffmpeg = await self._start_ffmpeg(argv)
        except BaseException as exc:
            unwatch_all()
            if not isinstance(exc, OSError):
                raise
            self.ffmpeg = None
            cause = StopCause("exited", f"could not start ffmpeg: {exc.strerror or exc}", "", "", None)
            return 0.0, False, cause
        self._queue_status(StatusChange(
            recorder_pid=self.ffmpeg.pid, recorder_node=self.node, last_started_at=datetime.now(UTC)
        ))  # fmt: skip
        watchdog = ProgressWatchdog(
            started_at=started,
            segment_seconds=self.camera.segment_seconds,
            startup_timeout_s=self.options.startup_timeout_s,
        )
        produced = False
        stalled = False

        def this_run(name: str) -> bool:
            return name.endswith(run_suffix)

        waiter = asyncio.ensure_future(self.ffmpeg.wait())
        try:
            while not waiter.done() and not self._stopping.is_set():
                self.heartbeat = now = time.monotonic()
                today = day_dir_name(datetime.now(UTC))
                if today != ensured_day:
                    day_folders = await asyncio.to_thread(ensure_day_dirs, self.camera_dir, datetime.now(UTC))
                    if watch is not None:  # keep yesterday's (a file that began before midnight closes there)
                        keep = {ensured_day, *(d.name for d in day_folders)}
                        for folder in [f for f in watched if f.name not in keep]:
                            watch.unwatch(watched.pop(folder))
                        self._watch_run_folders(watch, watched, day_folders, run_files, run_suffix)
                    ensured_day = today
                if run_files.needs_listing(now, time.time()):
                    # Only this run's day folders are listed (today's, and the one it started in), so the poll
                    # costs the same whatever footage is kept; tomorrow's folder exists before ffmpeg needs it.
                    days = sorted({run_day, today})
                    files = await asyncio.to_thread(list_segment_files, self.camera_dir, this_run, days)
                    if run_files.listed(now, files):
                        self.wake_indexer()  # a new file: the one before it is closed
                before = watchdog.last_progress_at
                watchdog.observe(now, run_files.total_bytes)
                if watchdog.produced_output:
                    if watchdog.last_progress_at != before:
                        self.last_healthy_mono = now
                    if not produced:
                        produced = True
                        self._on_recording()
                if getattr(self.ffmpeg, "input_failed", False):
                    # The input already timed out (ffmpeg said so); it would spend another timeout or two
                    # retrying and tearing down, and SIGTERM does not cut that short. Every fragment it
                    # received is on disk already (flush_packets), so kill it; the cause comes from stderr.
                    logger.warning("camera %s: ffmpeg reports its input failed; restarting it", self.camera.id)
                    self.ffmpeg.kill()
                    break
                if watchdog.stalled(now):
                    stalled = True
                    logger.warning("camera %s: %s; restarting ffmpeg", self.camera.id, watchdog.stall_reason(now))
                    self.ffmpeg.kill()
                    break
                await asyncio.wait({waiter}, timeout=until_next_tick(self.options.poll_interval_s))
                if not waiter.done():
                    run_files.stat_current(time.monotonic())
            if self._stopping.is_set():
                await self.ffmpeg.stop()
            rc = await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
            unwatch_all()
        ran_s = time.monotonic() - started
        cause = classify_exit(self.ffmpeg.stderr_tail, rc, killed_for_stall=stalled, produced_output=produced)
        if cause.code == "codec":
            self.stream_codecs.forget()
        self.ffmpeg = None
        return ran_s, produced, cause

    def _watch_run_folders(
        self, watch: FolderWatch, watched: dict[Path, int], folders: list[Path], run_files: RunFiles, suffix: str
    ) -> None:
        """Watch the run's day folders (today's and tomorrow's, made ahead, so midnight is seen too): a new file of
        the run is the current one, a closed one goes to the indexer. A folder that cannot be watched (the
        kernel's watch limit) makes the run list its folders as without the watch."""

        def on_event(folder: Path, kind: str, name: str) -> None:
            if kind == "overflow":
                run_files.relist = True
                self.wake_indexer()
            elif not name.endswith(suffix):
                return
            elif kind == "created":
                run_files.created(folder / name)
            else:  # closed: index it now, without a listing
                self._closed_told.append(folder / name)
                self._closed_told_ever = True
                self._index_wake.set()

        for folder in folders:
            if folder in watched:
                continue
            try:
                watched[folder] = watch.watch(folder, lambda kind, name, folder=folder: on_event(folder, kind, name))
            except OSError as exc:
                logger.warning("camera %s: cannot watch %s (%s); listing it instead", self.camera.id, folder.name, exc)
                run_files.watched = False

    async def _start_ffmpeg(self, argv: list[str]) -> Any:
        env = recorder_env()
        if self._spawn is not None:
            return await self._spawn(argv, env)
        from heldar.recording.ffmpeg_process import FfmpegProcess

        process = FfmpegProcess(argv, env)
        await process.start()
        return process

    def _on_recording(self) -> None:
        self.backoff.reset()
        self.pending_gap_cause = None
        if self.state != "recording":
            self._set_state("recording", clear_error=True)

    def _after_run(self, cause: StopCause, produced: bool, ran_s: float, since_healthy: float | None) -> None:
        """Publish why this run ended: state, cause, event; remember the cause for the next gap."""
        self.last_cause = cause
        recently_healthy = produced or (since_healthy is not None and since_healthy < self.options.recent_window_s)
        was_recording = self.state == "recording"
        state = "offline" if recently_healthy and cause.code not in CONFIGURATION_CAUSES else "error"
        self.reconnects += 1
        now = datetime.now(UTC)
        if was_recording:
            self.pending_gap_cause = f"{cause.code}: {cause.message}"
        previous_code = self._last_published_code
        self._set_state(state, code=cause.code, message=cause.message, reconnect=True,
                        stop_at=now if was_recording else None)  # fmt: skip
        payload = {"cause": cause.code, "message": cause.message, "ran_seconds": round(ran_s, 1)}
        if cause.code == "disk_full" and previous_code != "disk_full":
            self._queue_event(EventRecord("disk_full", "critical", payload))
        if was_recording:
            self._queue_event(EventRecord("camera_offline", "warning", payload))
        elif previous_code != cause.code:  # one event per distinct failure, not one per retry
            self._queue_event(EventRecord("recorder_error", "warning", {**payload, "detail": cause.detail}))

    def _set_state(
        self,
        state: str,
        *,
        code: str | None = None,
        message: str | None = None,
        clear_error: bool = False,
        reconnect: bool = False,
        stop_at: datetime | None = None,
    ) -> None:
        self.state = state
        if code is not None:
            self._last_published_code = code
        if clear_error:
            self._last_published_code = None
        self._queue_status(StatusChange(
            state=state, last_error=message, last_error_code=code, clear_error=clear_error,
            reconnects=1 if reconnect else 0, clear_pid=reconnect, last_stop_at=stop_at,
        ))  # fmt: skip

    def _queue_status(self, change: StatusChange) -> None:
        self.pending.status.append(change)
        self._bound_pending()
        self._flush_wake.set()

    def _queue_event(self, event: EventRecord) -> None:
        self.pending.events.append(event)
        self._bound_pending()
        self._flush_wake.set()

    def _bound_pending(self) -> None:
        """While the sink is down, keep at most ``max_pending`` events and status changes: status changes are
        folded into one (the newest values win, reconnects add up); the oldest events are dropped and counted."""
        limit = self.options.max_pending
        if len(self.pending.status) > limit:
            self.pending.status = [fold_status(self.pending.status)]
        excess = len(self.pending.events) - limit
        if excess > 0:
            del self.pending.events[:excess]
            self.dropped_events += excess
            logger.warning(
                "camera %s: %s events dropped while the database is unreachable (%s in total)",
                self.camera.id, excess, self.dropped_events,
            )  # fmt: skip

    async def _sleep(self, seconds: float) -> None:
        """Wait out a backoff (or until woken), refreshing the heartbeat so a backoff never looks hung."""
        self._wake.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self.sleeping_until = time.monotonic() + seconds
        try:
            while not self._wake.is_set():
                self.heartbeat = time.monotonic()
                left = deadline - loop.time()
                if left <= 0:
                    break
                await wait_set(self._wake, min(left, HEARTBEAT_SLICE_S))
        finally:
            self.sleeping_until = None
            self.heartbeat = time.monotonic()

    # --- index loop -----------------------------------------------------------------------------
    async def _index_loop(self) -> None:
        """A listing pass when woken for one (run ended, back-fill, lost events) and at the idle interval; between
        them, when the folder watch told of closed files, only those are indexed."""
        loop = asyncio.get_running_loop()
        listed_at = -math.inf
        while not self._stopping.is_set():
            raise_if_cancelled()
            self._index_wake.clear()
            idle_s = WATCHED_INDEX_IDLE_S if self._closed_told_ever else INDEX_IDLE_S
            due_at = listed_at + max(self.options.indexer_interval_s, idle_s)
            told, self._closed_told = self._closed_told, []
            try:
                queued = 0
                if self._index_listing or loop.time() >= due_at:
                    self._index_listing = False
                    listed_at = loop.time()
                    queued = await self.index_once()
                if told:  # also after a listing: one that ran between a close and the next file took it for open
                    queued += await self.index_files(told)
                if queued:
                    self._flush_wake.set()
            except Exception:
                logger.exception("camera %s: index pass failed", self.camera.id)
            if not self._closed_told and not self._index_listing:
                idle_s = WATCHED_INDEX_IDLE_S if self._closed_told_ever else INDEX_IDLE_S
                due_at = listed_at + max(self.options.indexer_interval_s, idle_s)
                await wait_set(self._index_wake, max(0.0, due_at - loop.time()))

    async def index_once(self, *, recorder_running: bool = True) -> int:
        """Probe closed, not yet indexed (or re-written) files; queue their records. Returns how many."""
        # Already-indexed files are stat'ed again (to catch a re-written one) only every FULL_SCAN_EVERY_S.
        every = WATCHED_FULL_SCAN_EVERY_S if self._closed_told_ever else FULL_SCAN_EVERY_S
        full = time.monotonic() - self._last_full_scan >= every or not self._known_loaded
        wanted = None if full else (lambda n: n not in self.indexed or n.endswith(f"_{self.run_id}.mp4"))
        # The flat folder and today's day folder (the last two days in a full scan): older days are closed (the
        # retention sweeper's orphan pass handles a file left unindexed there), so the cost does not grow with
        # the footage kept.
        days = recent_days(datetime.now(UTC), 2) if full else active_days(datetime.now(UTC))
        files = await asyncio.to_thread(list_segment_files, self.camera_dir, wanted, days)
        if full:
            self._last_full_scan = time.monotonic()
            # Forget names no listing will show again (older days, files retention removed): the map stays the
            # size of two days of footage instead of growing for ever. A name seen again is re-probed and its
            # (idempotent) record re-sent.
            listed = {f.name for f in files}
            for stale in [n for n in self.indexed if n not in listed]:
                del self.indexed[stale]
                self.unprobeable_since.pop(stale, None)
        current = self.run_id if recorder_running and self.ffmpeg is not None else None
        closed = closed_segments(
            files, current_run_id=current, now=time.time(),
            open_grace_s=self.camera.segment_seconds + 15,
        )  # fmt: skip
        if not self._known_loaded and closed:
            known = await self.sink.indexed_sizes(self.camera.id, [f.name for f in files])
            self.indexed.update(known)
            self._known_loaded = True
        return await self._queue_closed(closed)

    async def index_files(self, paths: list[Path]) -> int:
        """Index files of the current run the folder watch saw closed (no listing; such a file is in no index yet,
        so no ``indexed_sizes`` either). Returns how many were queued."""
        files = await asyncio.to_thread(lambda: [f for f in map(segment_file_at, paths) if f is not None])
        return await self._queue_closed(files)

    async def _queue_closed(self, closed: list[SegmentFile]) -> int:
        queued = 0
        for f in closed:
            if self.indexed.get(f.name) == f.size_bytes or self.pending_names.get(f.name) == f.size_bytes:
                continue
            if len(self.pending.segments) >= self.options.max_pending:
                # The sink is down and the backlog is full: leave the rest on disk; a later pass indexes them.
                self.deferred_index_passes += 1
                break
            record = await self._probe(f)
            if record is None:
                continue
            self.pending.segments.append(record)
            self.pending_names[f.name] = f.size_bytes
            queued += 1
        return queued

    async def _probe(self, f: SegmentFile) -> SegmentRecord | None:
        probe, digest = await asyncio.to_thread(probe_and_hash, f.path)
        if probe is None and f.size_bytes < EMPTY_SEGMENT_BYTES and f.run_id != self.run_id:
            # A finished run's file with no video in it (ffmpeg was killed right after opening it): only a
            # header, no footage. Remove it so the folder holds nothing the index does not.
            logger.info("camera %s: removing %s (%s bytes, no video)", self.camera.id, f.name, f.size_bytes)
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(f.path.unlink)
            return None
        if probe is None:
            first = self.unprobeable_since.setdefault(f.name, time.monotonic())
            if time.monotonic() - first > UNPROBEABLE_GIVE_UP_S:
                logger.warning("camera %s: %s holds no readable video; skipping it", self.camera.id, f.name)
                self.indexed[f.name] = f.size_bytes
            return None
        self.unprobeable_since.pop(f.name, None)
        start = f.start
        cursor = self.run_cursor.get(f.run_id)
        if cursor is not None and 0 <= (cursor - f.start).total_seconds() < RUN_CHAIN_TOLERANCE_S:
            start = cursor
        end = start + timedelta(seconds=probe.duration_s)
        if not f.is_backfill:
            self.run_cursor[f.run_id] = end
        gap_cause = None if f.is_backfill or cursor is not None else self.run_gap_cause.pop(f.run_id, None)
        return SegmentRecord(
            file_name=f.name, start=start, end=end, duration_s=probe.duration_s, size_bytes=f.size_bytes,
            codec=probe.codec, width=probe.width, height=probe.height, fps=probe.fps,
            source="backfill" if f.is_backfill else "live", gap_cause=gap_cause, sha256=digest,
        )  # fmt: skip

    # --- flush loop -----------------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            raise_if_cancelled()
            if self.pending.empty:
                self._flush_wake.clear()
                await self._flush_wake.wait()
            # What arrives within the interval goes out in the same batch; a failed write is retried after it.
            await asyncio.sleep(self.options.flush_interval_s)
            await self.flush()

    async def flush(self) -> bool:
        """Hand everything pending to the sink, in batches of at most ``FLUSH_MAX_SEGMENTS`` segments.

        A failed write keeps its batch (in order, ahead of what arrived meanwhile) for the next try."""
        while not self.pending.empty:
            batch, names = self._take_batch()
            try:
                await self.sink.write(batch)
            except Exception as exc:
                self.flush_failures += 1
                self.last_flush_error = f"{exc.__class__.__name__}: {exc}"[:300]
                logger.warning(
                    "camera %s: could not write batch (%s); keeping it", self.camera.id, exc.__class__.__name__
                )
                batch.absorb(self.pending)  # keep order: failed batch first, then what arrived meanwhile
                names.update(self.pending_names)
                self.pending, self.pending_names = batch, names
                return False
            self.indexed.update(names)
            self.last_flush_error = None
        return True

    def _take_batch(self) -> tuple[RecordingBatch, dict[str, int]]:
        """Split off the next batch to write: the oldest segments (bounded), with all status and events."""
        pending, names = self.pending, self.pending_names
        if len(pending.segments) <= FLUSH_MAX_SEGMENTS:
            self.pending, self.pending_names = RecordingBatch(self.camera.id), {}
            return pending, names
        head = sorted(pending.segments, key=lambda seg: seg.start)
        now, rest = head[:FLUSH_MAX_SEGMENTS], head[FLUSH_MAX_SEGMENTS:]
        batch = RecordingBatch(self.camera.id, now, pending.status, pending.events)
        self.pending = RecordingBatch(self.camera.id, rest)
        taken = {seg.file_name for seg in now}
        self.pending_names = {n: size for n, size in names.items() if n not in taken}
        return batch, {n: size for n, size in names.items() if n in taken}

    async def _shutdown(self) -> None:
        if self.ffmpeg is not None:
            await self.ffmpeg.stop()
            self.ffmpeg = None
        with contextlib.suppress(Exception):
            await self.index_once(recorder_running=False)
        if self.stop_reason == "reload":
            # A new recorder with the new settings starts right after this one: no offline state in between.
            self._queue_status(StatusChange(clear_pid=True, last_stop_at=datetime.now(UTC)))
        else:
            message = STOP_MESSAGES.get(self.stop_reason, f"recorder stopped ({self.stop_reason})")
            self._queue_status(StatusChange(
                state="offline", last_error=message, last_error_code=self.stop_reason,
                clear_pid=True, last_stop_at=datetime.now(UTC),
            ))  # fmt: skip
        for _ in range(3):
            if await self.flush():
                break
            await asyncio.sleep(0.5)
