"""HLS VOD playlists over recorded fragmented-MP4 segments: no copy of the footage, no re-encode.

The recorder writes each segment as fragmented MP4 (``empty_moov``, one ``moof``+``mdat`` fragment per GOP).
:func:`fmp4_layout` reads the box headers and each fragment's ``tfdt`` (no sample data); a playlist then
names, per file, its init section (``ftyp``+``moov``) as ``#EXT-X-MAP`` and each fragment that overlaps the
window as one media segment (cuts fall on fragment, i.e. keyframe, boundaries). Each file's timestamps restart
at zero (the segment muxer's ``reset_timestamps``) and ffmpeg's HLS reader does not reset its clock at a
discontinuity, so :func:`fragment_bytes` serves a fragment with only its ``tfdt`` decode times moved onto the
session's one timeline (every other byte as recorded). A gap (time no file covers) is closed up on that
timeline and marked ``#EXT-X-DISCONTINUITY``; ``#EXT-X-PROGRAM-DATE-TIME`` on every file says where in wall
time it lies.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from heldar.media.fmp4_probe import MAX_HEADER_BOX, moov_tracks
from heldar.media.mp4_boxes import NotFragmented, file_boxes, file_find

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fragment:
    offset: int  # of its moof
    size: int  # moof + mdat (and anything up to the next moof)
    time_s: float  # decode time of its first video sample, relative to the file's first fragment
    tfdts: tuple[tuple[int, int, int, int], ...]  # (offset of the value, 4|8 bytes, track id, value) per traf


@dataclass(frozen=True, slots=True)
class Fmp4Layout:
    init_size: int  # ftyp + moov, from byte 0
    fragments: list[Fragment]
    timescales: dict[int, int]  # track id -> ticks per second
    bases: dict[int, int]  # track id -> its first fragment's decode time


def _u32(f: BinaryIO, at: int) -> int:
    f.seek(at)
    return int(struct.unpack(">I", f.read(4))[0])


def _timescales(f: BinaryIO, moov: tuple[int, int, int]) -> dict[int, int]:
    """track id -> mdhd timescale of every trak, read as the segment probe reads a moov."""
    off, size, header = moov
    if size > MAX_HEADER_BOX:
        raise NotFragmented("moov too large")
    f.seek(off + header)
    scales = {track_id: track.timescale for track_id, track in moov_tracks(f.read(size - header)).items()}
    if not scales:
        raise NotFragmented("no tracks")
    return scales


def _tfdts(f: BinaryIO, moof: tuple[int, int, int]) -> tuple[tuple[int, int, int, int], ...]:
    found = []
    off, size, header = moof
    for kind, t_off, t_size, t_header in file_boxes(f, off + header, off + size):
        if kind != b"traf":
            continue
        tfhd = file_find(f, t_off + t_header, t_off + t_size, [b"tfhd"])
        tfdt = file_find(f, t_off + t_header, t_off + t_size, [b"tfdt"])
        if tfhd is None or tfdt is None:
            raise NotFragmented("traf without tfhd/tfdt")
        track_id = _u32(f, tfhd[0] + tfhd[2] + 4)
        f.seek(tfdt[0] + tfdt[2])
        width = 8 if f.read(1)[0] == 1 else 4
        at = tfdt[0] + tfdt[2] + 4
        f.seek(at)
        value = int(struct.unpack(">Q" if width == 8 else ">I", f.read(width))[0])
        found.append((at, width, track_id, value))
    if not found:
        raise NotFragmented("fragment without traf")
    return tuple(found)


def fmp4_layout(path: Path) -> Fmp4Layout:
    """Init-section size, fragments and track timescales of a fragmented MP4 (reads box headers only).

    Cached by (path, size, mtime): a playlist and each of its part requests parse a closed file once.
    """
    st = os.stat(path)
    return _layout_cached(os.fspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8192)
def _layout_cached(path: str, size: int, mtime_ns: int) -> Fmp4Layout:
    del size, mtime_ns  # the cache key only
    with open(path, "rb") as f:
        end = f.seek(0, 2)
        top = list(file_boxes(f, 0, end))
        moov = next(((o, s, h) for k, o, s, h in top if k == b"moov"), None)
        moofs = [(o, s, h) for k, o, s, h in top if k == b"moof"]
        if moov is None or not moofs or moov[0] > moofs[0][0]:
            raise NotFragmented("not a fragmented MP4 with its moov first")
        scales = _timescales(f, moov)
        # A fragment runs from its moof to the next moof; the last to the end of its mdat (not a trailing mfra).
        media_end = max(o + s for k, o, s, _ in top if k == b"mdat")
        tfdts = [_tfdts(f, m) for m in moofs]
    bases: dict[int, int] = {}
    for entry in tfdts:
        for _, _, track, value in entry:
            bases.setdefault(track, value)
    lead = tfdts[0][0][2]  # the first traf's track (the video: the recorder maps it first)
    if lead not in scales:
        raise NotFragmented("traf of an unknown track")
    fragments = []
    for i, (off, _, _) in enumerate(moofs):
        nxt = moofs[i + 1][0] if i + 1 < len(moofs) else media_end
        value = next((v for _, _, t, v in tfdts[i] if t == lead), bases[lead])
        fragments.append(Fragment(off, nxt - off, (value - bases[lead]) / scales[lead], tfdts[i]))
    return Fmp4Layout(moov[0] + moov[1], fragments, scales, bases)


def fragment_bytes(path: Path, layout: Fmp4Layout, index: int, offset_s: float) -> bytes:
    """Fragment ``index`` of the file with its decode times moved so the file's start plays at ``offset_s``.

    Only the ``tfdt`` values change (each file's timestamps restart at zero; a player needs one timeline);
    the samples are the recorded bytes. Raises ``OverflowError`` when a time does not fit a 32-bit ``tfdt``.
    """
    fr = layout.fragments[index]
    with open(path, "rb") as f:
        f.seek(fr.offset)
        data = bytearray(f.read(fr.size))
    for at, width, track, value in fr.tfdts:
        scale = layout.timescales.get(track)
        if scale is None:
            continue
        moved = value - layout.bases[track] + round(offset_s * scale)
        if moved < 0:
            moved = 0
        data[at - fr.offset : at - fr.offset + width] = moved.to_bytes(width, "big")
    return bytes(data)


@dataclass(frozen=True, slots=True)
class PlaylistFile:
    """One recorded file of the session: its index in the session, start, duration, and the window inside it."""

    index: int
    start: datetime
    duration_s: float
    layout: Fmp4Layout
    inpoint: float
    outpoint: float


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_playlist(
    files: list[PlaylistFile],
    init_uri: Callable[[int], str],
    part_uri: Callable[[int, int, float], str],
    gaps_before: set[int] | None = None,
) -> tuple[str, float, int]:
    """The VOD playlist (text, total seconds, parts) over ``files``.

    ``init_uri(i)`` names file ``i``'s init section; ``part_uri(i, k, offset_s)`` its fragment ``k`` placed on
    the session's timeline at ``offset_s`` for the file start; ``gaps_before`` holds the files that follow a
    gap (an ``#EXT-X-DISCONTINUITY`` goes before them).
    """
    entries: list[str] = []
    total = 0.0
    count = 0
    longest = 1.0
    for pf in files:
        frags = pf.layout.fragments
        picked: list[tuple[int, Fragment, float]] = []
        for k, fr in enumerate(frags):
            end = frags[k + 1].time_s if k + 1 < len(frags) else pf.duration_s
            if end <= pf.inpoint + 1e-3 or fr.time_s >= pf.outpoint - 1e-3:
                continue
            picked.append((k, fr, max(end - fr.time_s, 0.001)))
        if not picked:
            continue
        if entries and gaps_before and pf.index in gaps_before:
            entries.append("#EXT-X-DISCONTINUITY")
        offset = total - picked[0][1].time_s
        entries.append(f'#EXT-X-MAP:URI="{init_uri(pf.index)}"')
        entries.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(pf.start + timedelta(seconds=picked[0][1].time_s))}")
        for k, _, dur in picked:
            entries += [f"#EXTINF:{dur:.3f},", part_uri(pf.index, k, offset)]
            total += dur
            count += 1
            longest = max(longest, dur)
    head = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{math.ceil(longest)}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    return "\n".join([*head, *entries, "#EXT-X-ENDLIST"]) + "\n", total, count
