"""asyncio waits that never swallow a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` loses a ``cancel()`` that arrives in the same loop turn as
the event being set: the inner wait finishes first, and ``wait_for`` returns its result instead of raising
``CancelledError``. A loop built on it (``while True: wait_for(wake.wait(), interval); work()``) then runs on
after its task was cancelled, and whoever awaits that task on shutdown waits for ever (seen as the API's
shutdown hanging when a late event notification woke the webhook notifier just as it was stopped).
``asyncio.timeout`` has no such race: :func:`wait_set` is built on it.

Libraries still use ``wait_for`` inside (aiomqtt's publish and disconnect, asyncpg's): a cancel they swallow
leaves the task's ``cancelling()`` count raised, so a long-running loop calls :func:`raise_if_cancelled` once per
turn and ends there instead of running on.
"""

from __future__ import annotations

import asyncio
from typing import Any


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` when the current task was cancelled but something below swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError("cancelled (the cancel was swallowed by a wait below; see heldar.aio)")


async def wait_set(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passes; True when it was set. A cancel always propagates."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], timeout_s: float = 10.0) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait up to ``timeout_s`` for them to end; returns those still running (a stop never
    waits for ever on a task that ignores its cancel)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a task that failed while stopping is not reported again at exit
    return [t for t in tasks if t in pending]
