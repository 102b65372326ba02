"""One short ffmpeg job (a clip, a still): run to completion within a deadline, killed if it runs out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from heldar.media.recorder_command import recorder_env


async def run_ffmpeg(argv: Sequence[str], timeout_s: float, *, want_stdout: bool = False) -> tuple[int, bytes, bytes]:
    """``(exit code, stdout, stderr)`` of ``argv`` run with the allow-list environment. On timeout (``TimeoutError``)
    or cancellation the process is killed and reaped before the exception goes on."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if want_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=recorder_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out or b"", err or b""
