"""ISO-BMFF (MP4) box walking: box headers from a file or from bytes already read, nothing decoded.

Shared by the HLS layout reader (:mod:`heldar.media.hls`) and the box-level segment probe
(:mod:`heldar.media.fmp4_probe`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"})


class NotFragmented(ValueError):
    """The file is not a well-formed fragmented MP4 (bad box sizes, missing boxes, moov not first)."""


def file_boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, size, header size) of the boxes in ``[start, end)`` of an open file."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1:
            if len(head) < 16:
                return
            size = struct.unpack(">Q", head[8:16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise NotFragmented(f"bad box size at {pos}")
        yield kind, pos, min(size, end - pos), header
        pos += size


def file_find(f: BinaryIO, start: int, end: int, path: list[bytes]) -> tuple[int, int, int] | None:
    """The first box along ``path`` (e.g. ``[b"traf", b"tfdt"]``) inside ``[start, end)``: (offset, size, header)."""
    for kind, off, size, header in file_boxes(f, start, end):
        if kind == path[0]:
            if len(path) == 1:
                return off, size, header
            if kind in CONTAINERS:
                found = file_find(f, off + header, off + size, path[1:])
                if found is not None:
                    return found
    return None


def buffer_boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset of the payload, end) of the boxes in ``buf[start:end]``; a box that overruns raises."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise NotFragmented(f"truncated box header at {pos}")
            size = struct.unpack_from(">Q", buf, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise NotFragmented(f"bad box size at {pos}")
        yield kind, pos + header, pos + size
        pos += size


def buffer_children(buf: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The first box of each type directly inside ``buf[start:end]``: type -> (payload offset, end)."""
    out: dict[bytes, tuple[int, int]] = {}
    for kind, body, stop in buffer_boxes(buf, start, end):
        out.setdefault(kind, (body, stop))
    return out
