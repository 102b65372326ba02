"""A loop that waits for a wake-up with a timeout ends when cancelled, even when the wake-up lands in the same
loop turn as the cancel (Python 3.11's ``asyncio.wait_for`` swallows that cancel; see ``heldar.aio``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from heldar.aio import raise_if_cancelled, wait_set, within
from heldar.webhooks.notifier import Notifier, NotifierPolicy

ROOT = Path(__file__).resolve().parents[2]


class _NoDatabase:
    """The notifier's pool: outside the boundary under test. Every use fails (a sweep logs and waits again)."""

    def acquire(self) -> Any:
        raise OSError("no database in this unit test")

    async def fetch(self, *_: Any, **__: Any) -> Any:
        raise OSError("no database in this unit test")


async def _cancel_as_woken(task: asyncio.Task[Any], wake: Any) -> bool:
    """Let ``task`` reach its wait, wake it and cancel it in one turn; True when it then ends cancelled."""
    await asyncio.sleep(0.05)
    wake()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    if not done:  # the cancel was lost: stop it for good so the test run goes on
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        return False
    return task.cancelled()


def test_webhook_notifier_stops_when_woken_as_it_is_cancelled() -> None:
    async def main() -> bool:
        notifier = Notifier(_NoDatabase(), NotifierPolicy(interval_s=60, settle_s=0))  # type: ignore[arg-type]
        return await _cancel_as_woken(asyncio.create_task(notifier.run()), notifier.wake)

    assert asyncio.run(main()), "the notifier ran on after its task was cancelled"


def test_wait_set_and_within() -> None:
    async def main() -> None:
        event = asyncio.Event()
        assert await wait_set(event, 0.01) is False
        event.set()
        assert await wait_set(event, 0.01) is True
        assert await within(asyncio.sleep(0, "done"), 1) == "done"
        with pytest.raises(TimeoutError):
            await within(asyncio.sleep(1), 0.01)

        async def loop(ev: asyncio.Event) -> None:
            while True:
                await wait_set(ev, 60)
                ev.clear()

        ev = asyncio.Event()
        assert await _cancel_as_woken(asyncio.create_task(loop(ev)), ev.set)

    asyncio.run(main())


def test_a_cancel_swallowed_below_ends_the_loop_at_its_next_turn() -> None:
    """A library's own ``wait_for`` (aiomqtt, asyncpg) may still swallow the cancel: the loop's checkpoint ends it."""

    async def loop(ev: asyncio.Event, guarded: bool) -> None:
        while True:
            if guarded:
                raise_if_cancelled()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), 60)  # the racy form, as inside a library
            ev.clear()

    async def main(guarded: bool) -> bool:
        ev = asyncio.Event()
        return await _cancel_as_woken(asyncio.create_task(loop(ev, guarded)), ev.set)

    assert asyncio.run(main(guarded=False)) is False  # the fault: the bare loop runs on after its cancel
    assert asyncio.run(main(guarded=True)) is True


def test_no_event_wait_goes_through_wait_for() -> None:
    """``wait_for(<event>.wait(), ...)`` is the racy form; waits on an event use ``heldar.aio.wait_set``."""
    racy = re.compile(r"wait_for\(\s*[\w.]+\.wait\(\)")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("heldar", "actors", "api", "config")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if racy.search(line) and path.name != "aio.py" and "proc" not in line and "self.wait()" not in line
    ]
    assert not found, found
