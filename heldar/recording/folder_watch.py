"""Files created and closed in a few folders, told by the kernel (Linux inotify) instead of found by listing.

A recorder used to list its run's day folder to learn that ffmpeg had started a new segment (and so closed the one
before), and its indexer listed again to find the closed file. A listing reads the whole folder, so its cost grows
with the footage of the day (8 640 files a day at 10 s segments); the kernel's notice costs the same whatever the
folder holds. One :class:`FolderWatch` serves one event loop: every recorder of a recorder host shares one inotify
descriptor, read by the loop itself (no thread).

The watch asks only for ``IN_CREATE``, ``IN_MOVED_TO`` and ``IN_CLOSE_WRITE``, never ``IN_MODIFY``, so ffmpeg's
writes queue nothing. Events for files a local process writes are reported on any filesystem, NFS included, which
is the case here: each node's ffmpeg writes the files its recorder watches.

Where inotify is missing (not Linux, the per-user instance or watch limit reached) :func:`folder_watch` returns
``None`` and the recorder lists, as before. A lost event (the kernel's queue overflowed) is reported to every
listener as ``overflow``, which makes them list once.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import itertools
import logging
import os
import struct
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
WATCH_MASK = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)
READ_BYTES = 64 * 1024

# A listener gets (kind, name): kind is "created" (a file was created or moved in), "closed" (a file open for
# writing was closed) or "overflow" (events were lost: list the folder); name is the file's base name ("" for
# overflow).
Listener = Callable[[str, str], None]


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise OSError("inotify exists on Linux only")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def parse_events(data: bytes) -> list[tuple[int, int, str]]:
    """``(wd, mask, name)`` of each ``struct inotify_event`` in one read."""
    out: list[tuple[int, int, str]] = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        start = offset + _EVENT.size
        name = data[start : start + length].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        out.append((wd, mask, name))
        offset = start + length
    return out


class FolderWatch:
    """One inotify descriptor on one event loop; folders are watched by token, several listeners per folder."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._libc = _libc()
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        self._loop = loop
        self._listeners: dict[int, dict[int, Listener]] = {}  # wd → token → listener
        self._wd_of: dict[int, int] = {}  # token → wd
        self._tokens = itertools.count(1)
        self.events = 0  # events delivered to listeners, and queue overflows seen
        self.overflows = 0
        loop.add_reader(fd, self._read)

    @property
    def watched_folders(self) -> int:
        return len(self._listeners)

    def watch(self, folder: Path, listener: Listener) -> int:
        """Tell ``listener`` about files created or closed in ``folder`` (which must exist); returns a token for
        :meth:`unwatch`. Raises ``OSError`` when the folder is missing or the watch limit is reached."""
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {folder}: {os.strerror(err)}")
        token = next(self._tokens)
        self._listeners.setdefault(wd, {})[token] = listener
        self._wd_of[token] = wd
        return token

    def unwatch(self, token: int) -> None:
        wd = self._wd_of.pop(token, None)
        if wd is None:
            return
        listeners = self._listeners.get(wd)
        if listeners is None:
            return
        listeners.pop(token, None)
        if not listeners:
            del self._listeners[wd]
            self._libc.inotify_rm_watch(self._fd, wd)  # fails harmlessly when the folder is gone already

    def _read(self) -> None:
        try:
            data = os.read(self._fd, READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        self.dispatch(data)

    def dispatch(self, data: bytes) -> None:
        """Hand one read's events to their listeners."""
        for wd, mask, name in parse_events(data):
            if mask & IN_Q_OVERFLOW:
                self.overflows += 1
                logger.warning("folder watch: the kernel's event queue overflowed; recorders list their folders")
                for listeners in list(self._listeners.values()):
                    self._deliver(listeners, "overflow", "")
            elif mask & IN_IGNORED:  # the folder was removed (or unwatched): the kernel dropped the watch
                for token in self._listeners.pop(wd, {}):
                    self._wd_of.pop(token, None)
            elif not mask & IN_ISDIR and wd in self._listeners:
                self._deliver(self._listeners[wd], "closed" if mask & IN_CLOSE_WRITE else "created", name)

    def _deliver(self, listeners: dict[int, Listener], kind: str, name: str) -> None:
        for listener in list(listeners.values()):
            self.events += 1
            try:
                listener(kind, name)
            except Exception:
                logger.exception("folder watch: a listener failed on %s %s", kind, name)

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._listeners.clear()
        self._wd_of.clear()


_WATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FolderWatch | None] = weakref.WeakKeyDictionary()


def folder_watch() -> FolderWatch | None:
    """The running loop's :class:`FolderWatch`, made on first use; ``None`` where inotify is unavailable (asked
    once per loop; the reason is logged)."""
    loop = asyncio.get_running_loop()
    if loop in _WATCHES:
        return _WATCHES[loop]
    watch: FolderWatch | None = None
    try:
        watch = FolderWatch(loop)
    except OSError as exc:
        logger.warning("folder watch unavailable (%s): recorders list their folders instead", exc)
    _WATCHES[loop] = watch
    return watch
