"""A loop that waits for a wake-up with a timeout ends when cancelled, even when the wake-up lands in the same
loop turn as the cancel (Python 3.11's ``asyncio.wait_for`` swallows that cancel; see ``heldar.aio``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

from heldar.aio import cancel_and_wait, raise_if_cancelled, wait_set
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


def test_wait_set() -> None:
    async def main() -> None:
        event = asyncio.Event()
        assert await wait_set(event, 0.01) is False
        event.set()
        assert await wait_set(event, 0.01) is True

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


def test_a_stop_waits_a_bounded_time_for_a_task_that_ignores_its_cancel() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():  # ignores every cancel until released
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)

    async def fails() -> None:
        raise RuntimeError("failed while stopping")

    async def main() -> None:
        polite = asyncio.create_task(asyncio.sleep(60))
        ignoring, failing = asyncio.create_task(stubborn()), asyncio.create_task(fails())
        await asyncio.sleep(0)
        assert await cancel_and_wait([polite, ignoring, failing], timeout_s=0.2) == [ignoring]
        assert polite.cancelled() and failing.done()
        release.set()
        ignoring.cancel()
        await asyncio.wait({ignoring}, timeout=2)

    asyncio.run(main())


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
