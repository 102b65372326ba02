"""Run a :class:`FakeCamSim` on an event loop in a background thread (for synchronous code/tests)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from heldar.fakecam.auth import AuthScheme
from heldar.fakecam.faults import FaultEvent, FaultMode
from heldar.fakecam.server import FakeCamSim
from heldar.fakecam.source import StreamProfile

logger = logging.getLogger(__name__)

T = TypeVar("T")
CALL_TIMEOUT_S = 30.0
STREAM_READY_TIMEOUT_S = 330.0  # a looped clip not in the cache is encoded once first (up to 5 min)


class FakeCamSimThread:
    """``with FakeCamSimThread(port=0, control_port=0) as sim: ...``; arguments are FakeCamSim's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sim: FakeCamSim | None = None

    @property
    def sim(self) -> FakeCamSim:
        if self._sim is None:
            raise RuntimeError("simulator not started")
        return self._sim

    def start(self, timeout: float = 20.0) -> FakeCamSimThread:
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._sim = FakeCamSim(*self._args, **self._kwargs)
                loop.run_until_complete(self._sim.start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="fakecam", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("fakecam did not start")
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        if self._sim is not None:
            fut = asyncio.run_coroutine_threadsafe(self._sim.stop(), loop)
            try:
                fut.result(CALL_TIMEOUT_S)
            except Exception:
                logger.exception("fakecam stop failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> FakeCamSimThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- marshalling
    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("simulator not started")

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(CALL_TIMEOUT_S)

    def _await(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        if self._loop is None:
            raise RuntimeError("simulator not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    # -------------------------------------------------------------- API
    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def control_port(self) -> int | None:
        return self.sim.control_port

    @property
    def host(self) -> str:
        return self.sim.advertised_host

    def add_camera(
        self,
        name: str,
        username: str | None = None,
        password: str | None = None,
        *,
        auth: AuthScheme = "any",
        replay_enabled: bool = True,
        device_port: int | None = None,
        profile: StreamProfile | None = None,
    ) -> str:
        """Add a camera; returns its live URL (with credentials) once its stream serves. ``device_port``
        (0 = any free port) also serves it alone on that port with Hikvision paths; ``profile``: its own
        stream (H.265, G.711 audio, the looped 1080p clip), else the simulator's default."""
        self._call(
            self.sim.add_camera, name, username, password, auth=auth, replay_enabled=replay_enabled, profile=profile
        )
        self._await(self.sim.wait_ready(name), STREAM_READY_TIMEOUT_S)
        if device_port is not None:
            self._await(self.sim.add_device(name, device_port))
        return self.sim.url(name)

    def remove_camera(self, name: str) -> None:
        self._call(self.sim.remove_camera, name)

    def set_fault(self, name: str, mode: str | FaultMode) -> FaultMode:
        return self._call(self.sim.set_fault, name, mode)

    def set_replay_enabled(self, name: str, enabled: bool) -> None:
        self._call(self.sim.set_replay_enabled, name, enabled)

    def truth(self, name: str) -> list[tuple[datetime, datetime | None]]:
        return self._call(self.sim.truth, name)

    def fault_log(self, name: str) -> list[FaultEvent]:
        return self._call(self.sim.fault_log, name)

    def status(self) -> dict[str, Any]:
        return self._call(self.sim.status)

    def session_count(self, name: str | None = None) -> int:
        return self._call(self.sim.session_count, name)

    def url(self, name: str, with_credentials: bool = True) -> str:
        return self.sim.url(name, with_credentials)

    def replay_url(self, name: str, start: datetime, end: datetime, with_credentials: bool = True) -> str:
        return self.sim.replay_url(name, start, end, with_credentials)

    def replay_url_template(self, name: str, with_credentials: bool = True) -> str:
        return self.sim.replay_url_template(name, with_credentials)

    def device_url(self, name: str, with_credentials: bool = True, replay: bool = False) -> str:
        return self.sim.device_url(name, with_credentials, replay)

    def footage_span(self) -> tuple[float, float] | None:
        return self._call(lambda: self.sim.encoder.footage_span)

    def captured_since(self, name: str, ticks: int = -1) -> list[tuple[int, float, list[bytes]]]:
        """Camera ``name``'s pictures captured after ``ticks`` (90 kHz since the Unix epoch), from the replay
        ring: (capture ticks, wall clock when sent, NAL units). Benchmarks find a recorded picture by its bytes."""

        def pick() -> list[tuple[int, float, list[bytes]]]:
            enc = self.sim.encoder_of(self.sim.camera(name))
            return [(au.ticks, au.sent, au.nals) for au in enc.footage if au.ticks > ticks]

        return self._call(pick)
