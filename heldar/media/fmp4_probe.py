"""Probe a fragmented-MP4 segment from its boxes alone: no demuxer, no sample data read.

The recorder writes every segment as fragmented MP4 (``empty_moov``, one ``moof`` + ``mdat`` per GOP). Its
``moov`` names the tracks (``tkhd`` id, ``mdhd`` timescale, ``hdlr`` kind, the ``stsd`` sample entry with the
codec and the picture size) and each ``moof`` says which samples its ``mdat`` holds and how long each lasts
(``tfdt`` + ``trun``, with ``tfhd``/``trex`` defaults). That is all a segment's index row needs, read in a
few small ``read`` calls per fragment where PyAV demuxes every packet of the file.

Only complete fragments count (a ``moof`` whose ``mdat`` is wholly on disk), so a file still being written
reports what it holds so far. :func:`probe_fmp4` raises :class:`~heldar.media.mp4_boxes.NotFragmented` for
anything that is not such a file; :func:`heldar.media.probe.probe_segment` then falls back to PyAV.
"""

from __future__ import annotations

import math
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from heldar.media.mp4_boxes import NotFragmented, buffer_boxes, buffer_children, file_boxes

# sample entry four-cc -> the FFmpeg codec name PyAV reports
_VIDEO_CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc"}
# the largest moov or moof read into memory (a camera's are a few hundred bytes to a few KiB)
MAX_HEADER_BOX = 4 << 20


@dataclass(frozen=True, slots=True)
class Fmp4Facts:
    duration_s: float  # first sample's decode time to the last one's end, video track
    codec: str
    width: int
    height: int
    video_samples: int
    has_audio: bool


@dataclass(slots=True)
class _Track:
    track_id: int
    kind: bytes  # hdlr handler type: b"vide", b"soun", ...
    timescale: int
    codec: bytes  # sample entry four-cc
    width: int = 0
    height: int = 0
    default_duration: int = 0  # trex


def _track(buf: bytes, start: int, end: int) -> _Track | None:
    trak = buffer_children(buf, start, end)
    if b"tkhd" not in trak or b"mdia" not in trak:
        return None
    at, _ = trak[b"tkhd"]
    track_id = struct.unpack_from(">I", buf, at + 4 + (16 if buf[at] == 1 else 8))[0]
    mdia = buffer_children(buf, *trak[b"mdia"])
    if b"mdhd" not in mdia or b"hdlr" not in mdia or b"minf" not in mdia:
        return None
    at, _ = mdia[b"mdhd"]
    timescale = struct.unpack_from(">I", buf, at + 4 + (16 if buf[at] == 1 else 8))[0]
    at, _ = mdia[b"hdlr"]
    kind = bytes(buf[at + 8 : at + 12])  # version/flags, pre_defined, then the handler type
    stbl = buffer_children(buf, *mdia[b"minf"]).get(b"stbl")
    stsd = buffer_children(buf, *stbl).get(b"stsd") if stbl else None
    if stsd is None or timescale <= 0:
        return None
    entries = list(buffer_boxes(buf, stsd[0] + 8, stsd[1]))  # version/flags and entry_count first
    if not entries:
        return None
    codec, body, _ = entries[0]
    track = _Track(track_id, kind, timescale, codec)
    if kind == b"vide" and body + 28 <= stsd[1]:
        # visual sample entry: 6 reserved + data_reference_index, 16 bytes pre_defined/reserved, then w, h
        track.width, track.height = struct.unpack_from(">HH", buf, body + 24)
    return track


def moov_tracks(buf: bytes) -> dict[int, _Track]:
    """track id -> what the ``moov`` body ``buf`` says of each usable trak (with its ``trex`` defaults); raises
    ``NotFragmented`` for a moov without ``mvex`` (a plain MP4)."""
    tracks: dict[int, _Track] = {}
    trex_defaults: dict[int, int] | None = None  # None: no mvex, so not a fragmented MP4
    for kind, body, stop in buffer_boxes(buf, 0, len(buf)):
        if kind == b"trak":
            track = _track(buf, body, stop)
            if track is not None:
                tracks[track.track_id] = track
        elif kind == b"mvex":
            trex_defaults = trex_defaults or {}
            for sub, at, _ in buffer_boxes(buf, body, stop):
                if sub == b"trex":  # version/flags, track_ID, description index, default duration, ...
                    track_id, _, duration = struct.unpack_from(">III", buf, at + 4)
                    trex_defaults[track_id] = duration
    if trex_defaults is None:
        raise NotFragmented("moov without mvex: a plain MP4")
    for track_id, duration in trex_defaults.items():
        if track_id in tracks:
            tracks[track_id].default_duration = duration
    return tracks


def _traf_span(buf: bytes, start: int, end: int, tracks: dict[int, _Track]) -> tuple[int, int, int, int] | None:
    """(track id, first decode time, end decode time, samples) of one ``traf``."""
    traf = list(buffer_boxes(buf, start, end))
    tfhd = next(((b, s) for k, b, s in traf if k == b"tfhd"), None)
    tfdt = next(((b, s) for k, b, s in traf if k == b"tfdt"), None)
    if tfhd is None or tfdt is None:
        raise NotFragmented("traf without tfhd/tfdt")
    at = tfhd[0]
    flags = int.from_bytes(buf[at + 1 : at + 4], "big")
    track_id = struct.unpack_from(">I", buf, at + 4)[0]
    track = tracks.get(track_id)
    if track is None:
        return None
    at += 8
    at += 8 if flags & 0x01 else 0  # base data offset
    at += 4 if flags & 0x02 else 0  # sample description index
    default_duration = struct.unpack_from(">I", buf, at)[0] if flags & 0x08 else track.default_duration
    at = tfdt[0]
    base = struct.unpack_from(">Q" if buf[at] == 1 else ">I", buf, at + 4)[0]
    ticks = samples = 0
    for kind, body, stop in traf:
        if kind != b"trun":
            continue
        t_flags = int.from_bytes(buf[body + 1 : body + 4], "big")
        count = struct.unpack_from(">I", buf, body + 4)[0]
        at = body + 8 + (4 if t_flags & 0x01 else 0) + (4 if t_flags & 0x04 else 0)
        fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if t_flags & bit]
        if at + 4 * len(fields) * count > stop:
            raise NotFragmented("trun overruns its box")
        if t_flags & 0x100:  # per-sample durations: the first field of each sample's row
            rows = struct.iter_unpack(">" + "I" * len(fields), buf[at : at + 4 * len(fields) * count])
            ticks += sum(row[0] for row in rows)
        else:
            ticks += default_duration * count
        samples += count
    return track_id, base, base + ticks, samples


def probe_fmp4(path: Path | str, deadline: float = math.inf) -> Fmp4Facts | None:
    """The video track's span, codec, picture size and sample count from the boxes; ``None`` when the file
    holds no complete fragment of a video track. Raises ``NotFragmented`` (a ``ValueError``), ``OSError``, or
    ``TimeoutError`` past ``deadline`` (``time.monotonic()``)."""
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        moov = None
        tracks: dict[int, _Track] = {}
        video: int | None = None
        first = last = None
        samples = 0
        for kind, off, size, header in file_boxes(f, 0, end):
            if kind == b"moov":
                if size > MAX_HEADER_BOX:
                    raise NotFragmented("moov too large")
                f.seek(off + header)
                moov = f.read(size - header)
                tracks = moov_tracks(moov)
                video = next((t.track_id for t in tracks.values() if t.kind == b"vide"), None)
                if video is None:
                    return None
            elif kind == b"moof":
                if time.monotonic() > deadline:
                    raise TimeoutError("probe deadline exceeded")
                if moov is None:
                    raise NotFragmented("moof before moov")
                if size > MAX_HEADER_BOX or off + size + 8 > end:
                    break  # not a complete fragment (its mdat cannot be there yet)
                f.seek(off + header)
                moof = f.read(size - header)
                f.seek(off + size)
                mdat = f.read(16)
                if len(mdat) < 8 or mdat[4:8] != b"mdat":
                    break
                mdat_size = struct.unpack(">I", mdat[:4])[0]
                if mdat_size == 1 and len(mdat) == 16:
                    mdat_size = struct.unpack(">Q", mdat[8:16])[0]
                if mdat_size < 8 or off + size + mdat_size > end:
                    break  # the fragment's samples are not all on disk yet
                for t_kind, body, stop in buffer_boxes(moof, 0, len(moof)):
                    if t_kind != b"traf":
                        continue
                    span = _traf_span(moof, body, stop, tracks)
                    if span is None or span[0] != video:
                        continue
                    _, lo, hi, count = span
                    first = lo if first is None else min(first, lo)
                    last = hi if last is None else max(last, hi)
                    samples += count
        if moov is None:
            raise NotFragmented("no moov")
    assert video is not None
    if first is None or last is None or samples == 0:
        return None
    track = tracks[video]
    return Fmp4Facts(
        duration_s=(last - first) / track.timescale,
        codec=_VIDEO_CODECS.get(track.codec, track.codec.decode("ascii", "replace")),
        width=track.width,
        height=track.height,
        video_samples=samples,
        has_audio=any(t.kind == b"soun" for t in tracks.values()),
    )
