"""One ffmpeg child: started so that it dies with its parent, stderr tail kept, stopped politely."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import re
import signal
import sys
from collections.abc import Sequence

logger = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 8192
# ffmpeg prints these when the camera stopped delivering for its whole socket timeout; it then retries
# the read and sends TEARDOWN, each waiting the same timeout again before it exits on its own.
_INPUT_FAILED_RE = re.compile(rb"Failed reading RTSP data|Error during demuxing|Connection timed out")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel SIGKILLs the child when the process that started it dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class FfmpegProcess:
    """An ffmpeg run. ``stderr_tail`` holds the last 8 KiB it printed (may contain credentials:
    mask before showing it anywhere)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self._tail = bytearray()
        self._drain: asyncio.Task[None] | None = None
        self.input_failed = False  # ffmpeg reported its input timed out or broke

    async def start(self) -> int:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            preexec_fn=_die_with_parent,
        )
        self._drain = asyncio.get_running_loop().create_task(self._drain_stderr())
        return self.proc.pid

    async def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            if not self.input_failed and _INPUT_FAILED_RE.search(chunk):
                self.input_failed = True
            self._tail.extend(chunk)
            if len(self._tail) > STDERR_TAIL_BYTES:
                del self._tail[: len(self._tail) - STDERR_TAIL_BYTES]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    @property
    def stderr_tail(self) -> str:
        return self._tail.decode("utf-8", errors="replace")

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._drain, 2.0)
        return code

    async def stop(self, grace_s: float = 3.0) -> int | None:
        """SIGTERM (ffmpeg closes the current segment properly), SIGKILL after ``grace_s``."""
        if self.proc is None or self.proc.returncode is not None:
            return self.returncode
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            return await self.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
