"""RecorderHost ``recorder-host:<n>``: one actor process recording several cameras (opt-in density mode).

A Ray actor costs about 7 ms of CPU per second and ~40 MB of memory doing nothing (its core worker's threads and
the Python runtime). With ``HELDAR_CAMERAS_PER_RECORDER_HOST`` = k > 1 the supervisor places up to k cameras in
one host; each camera keeps its own :class:`~actors.camera.CameraRuntime` (recorder, ffmpeg, indexer, ANR), its own
unit in the supervisor (lifecycle, health checks, restarts, backoff), its own ``camera_status`` row and events.

What is shared is the process: a camera whose recorder crashes, stops or is restarted leaves its neighbours
recording; the host process dying (OOM, SIGKILL, node loss) restarts every camera in it, each on its own
backoff, in a new host. A camera is addressed as (host, camera id, token); the token names one recorder of that
camera, so a late stop or kill never hits the recorder that replaced it.

The supervisor sees a hosted camera as a :class:`HostedCamera`, which answers the same calls as a
``CameraActor`` handle (``health``, ``watch``, ``stop``, ``update_camera``, ``fill_now``); :func:`kill_recorder` is
``ray.kill`` for either. :class:`RecorderHosts` is the supervisor's placement of cameras onto hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import ray

from actors.camera import CameraRuntime, RecorderStart, camera_actor_name, check_recordings_root
from heldar.logging_setup import log_context, setup_actor_logging
from heldar.models.cameras import Camera

logger = logging.getLogger(__name__)

HOST_PREFIX = "recorder-host:"
DIRECTORY_TTL_S = 5.0  # how long a listing of the hosts and their cameras is trusted (adoption after a restart)


def recorder_host_name(index: int) -> str:
    return f"{HOST_PREFIX}{index}"


class CameraNotHosted(LookupError):
    """The host runs no recorder of this camera (or a newer one than the caller's token)."""


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1000)
class RecorderHost:
    def __init__(self, name: str, namespace: str, log_level: str = "INFO") -> None:
        setup_actor_logging(level=log_level)
        self.name = name
        self.namespace = namespace
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.cameras: dict[str, tuple[int, CameraRuntime]] = {}
        self._tokens = itertools.count(1)
        self.health_calls = 0  # batched health calls answered, and the most cameras one of them asked about
        self.largest_health_batch = 0

    def __repr__(self) -> str:  # the Ray dashboard's actor list shows this: which cameras the host records
        return f"RecorderHost({self.name}: {', '.join(sorted(self.cameras)) or 'no cameras'})"

    async def start(self) -> int:
        return os.getpid()

    async def add_camera(self, start: RecorderStart) -> int:
        """Start recording ``start.camera`` here; returns the token of its new recorder. A recorder of the same
        camera still in this host (a restart raced a kill) is killed first: one ffmpeg per camera."""
        camera = start.camera
        check_recordings_root(start.options.recordings_root, self.node_id)
        old = self.cameras.pop(camera.id, None)
        if old is not None:
            await old[1].kill()
        token = next(self._tokens)
        with log_context(camera_id=camera.id):  # the recorder's tasks log with their camera, as in a camera actor
            runtime = CameraRuntime(start, self.namespace, node_id=self.node_id, node_ip=self.node_ip)
        self.cameras[camera.id] = (token, runtime)
        logger.info("%s: recording camera %s (%d cameras here)", self.name, camera.id, len(self.cameras))
        return token

    def _get(self, camera_id: str, token: int) -> CameraRuntime:
        entry = self.cameras.get(camera_id)
        if entry is None or entry[0] != token:
            raise CameraNotHosted(f"{self.name} runs no recorder {token} of camera {camera_id}")
        return entry[1]

    async def camera_ids(self) -> dict[str, int]:
        """camera id → token of every recorder here (the supervisor adopts them after its own restart)."""
        return {cid: token for cid, (token, _) in self.cameras.items()}

    async def camera_health(self, camera_id: str, token: int) -> dict[str, Any]:
        report = self._get(camera_id, token).health()
        report.update(recorder_host=self.name, host_cameras=len(self.cameras))
        return report

    async def cameras_health(self, wanted: list[tuple[str, int]]) -> dict[str, dict[str, Any] | None]:
        """``camera_health`` of several recorders in one call (the supervisor checks a host's cameras together):
        camera id → report, or ``None`` for a recorder not hosted here (any more)."""
        self.health_calls += 1
        self.largest_health_batch = max(self.largest_health_batch, len(wanted))
        out: dict[str, dict[str, Any] | None] = {}
        for camera_id, token in wanted:
            try:
                out[camera_id] = await self.camera_health(camera_id, token)
            except CameraNotHosted:
                out[camera_id] = None
        return out

    async def camera_watch(self, camera_id: str, token: int) -> str:
        return await self._get(camera_id, token).watch()

    async def camera_update(
        self, camera_id: str, token: int, camera: Camera, live_version: str, anr_interval_s: float | None
    ) -> None:
        await self._get(camera_id, token).update_camera(camera, live_version, anr_interval_s)

    async def camera_fill_now(self, camera_id: str, token: int, gap: dict[str, Any]) -> Any:
        return await self._get(camera_id, token).fill_now(gap)

    async def camera_stop(self, camera_id: str, token: int, reason: str = "stopped") -> None:
        """A clean stop of one camera (ffmpeg closes its segment, last files indexed, final status flushed)."""
        with contextlib.suppress(CameraNotHosted):
            await self._get(camera_id, token).stop(reason)
        self._forget(camera_id, token)

    async def camera_kill(self, camera_id: str, token: int) -> None:
        """One camera's ``ray.kill``: its tasks end and its ffmpeg is SIGKILLed at once; neighbours go on."""
        entry = self.cameras.get(camera_id)
        if entry is None or entry[0] != token:
            return
        self._forget(camera_id, token)
        await entry[1].kill()

    def _forget(self, camera_id: str, token: int) -> None:
        entry = self.cameras.get(camera_id)
        if entry is not None and entry[0] == token:
            del self.cameras[camera_id]

    async def host_health(self) -> dict[str, Any]:
        return {"name": self.name, "pid": os.getpid(), "node_id": self.node_id, "cameras": sorted(self.cameras),
                "health_calls": self.health_calls, "largest_health_batch": self.largest_health_batch}  # fmt: skip


class _Call:
    """``handle.method.remote(*args)`` for one hosted camera: the host's ``camera_<method>(id, token, *args)``."""

    def __init__(self, method: Any, camera_id: str, token: int) -> None:
        self._method = method
        self._args = (camera_id, token)

    def remote(self, *args: Any) -> Any:
        return self._method.remote(*self._args, *args)


class _BatchedHealth:
    """``hosted.health.remote()``: joins this turn's one ``cameras_health`` call to the host (see
    :meth:`RecorderHosts.health`)."""

    def __init__(self, hosted: HostedCamera) -> None:
        self._hosted = hosted

    def remote(self) -> asyncio.Future[dict[str, Any]]:
        return self._hosted.hosts.health(self._hosted)


class HostedCamera:
    """What the supervisor holds for a camera recorded in a host: the calls of a ``CameraActor`` handle."""

    def __init__(self, hosts: RecorderHosts, host: Any, host_name: str, camera_id: str, token: int) -> None:
        self.hosts = hosts
        self.host = host
        self.host_name = host_name
        self.camera_id = camera_id
        self.token = token

    def __repr__(self) -> str:
        return f"HostedCamera({self.camera_id} in {self.host_name}, recorder {self.token})"

    def _call(self, name: str) -> _Call:
        return _Call(getattr(self.host, f"camera_{name}"), self.camera_id, self.token)

    @property
    def health(self) -> _BatchedHealth:
        return _BatchedHealth(self)

    @property
    def watch(self) -> _Call:
        return self._call("watch")

    @property
    def stop(self) -> _Call:
        return self._call("stop")

    @property
    def update_camera(self) -> _Call:
        return self._call("update")

    @property
    def fill_now(self) -> _Call:
        return self._call("fill_now")


def kill_recorder(handle: Any) -> None:
    """``ray.kill(handle, no_restart=True)`` for a camera actor; for a hosted camera only its recorder is killed
    (and the host with it when it was the host's last camera)."""
    if isinstance(handle, HostedCamera):
        handle.hosts.kill_camera(handle)
    else:
        ray.kill(handle, no_restart=True)


class RecorderHosts:
    """The supervisor's placement of cameras onto recorder hosts (only used with cameras per host > 1).

    ``assigned`` is the truth for placement: host name → camera id → token, updated synchronously on the
    supervisor's event loop before any await, so two starts never overfill a host and a host is killed only
    when nothing is placed on it. After a supervisor restart it is rebuilt from the hosts themselves."""

    def __init__(self, namespace: str, *, log_level: Callable[[], str] = lambda: "INFO") -> None:
        self.namespace = namespace
        self.log_level = log_level
        self.handles: dict[str, Any] = {}
        self.assigned: dict[str, dict[str, int]] = {}
        self._pending: dict[str, set[str]] = {}  # host → cameras whose add is in flight
        self._listed_at = 0.0
        self._list_lock = asyncio.Lock()
        # host → the health requests of this loop turn, sent as one call (camera id, token, its future)
        self._health_batches: dict[str, list[tuple[str, int, asyncio.Future[dict[str, Any]]]]] = {}
        self._health_tasks: set[asyncio.Task[None]] = set()

    # --- finding what runs -------------------------------------------------------------------------
    async def refresh(self, *, force: bool = False) -> None:
        """Learn every live host in the namespace and the cameras it records (cached ``DIRECTORY_TTL_S``)."""
        async with self._list_lock:
            if not force and time.monotonic() - self._listed_at < DIRECTORY_TTL_S:
                return
            try:
                named = await asyncio.to_thread(ray.util.list_named_actors, True)
            except Exception:
                return
            names = [e["name"] for e in named if e.get("namespace") == self.namespace
                     and str(e.get("name", "")).startswith(HOST_PREFIX)]  # fmt: skip
            for name in names:
                try:
                    handle = self.handles.get(name) or ray.get_actor(name, namespace=self.namespace)
                    cameras = await asyncio.wait_for(handle.camera_ids.remote(), 10)
                except Exception:
                    continue
                self.handles[name] = handle
                self.assigned[name] = {**dict(cameras), **self.assigned.get(name, {})}
            self._listed_at = time.monotonic()

    async def find(self, camera_id: str) -> Any:
        """The running recorder of ``camera_id``: its camera actor, or its place in a host; ``None``."""
        with contextlib.suppress(ValueError):
            return ray.get_actor(camera_actor_name(camera_id), namespace=self.namespace)
        await self.refresh()
        for name, cameras in self.assigned.items():
            if camera_id in cameras and name in self.handles:
                return HostedCamera(self, self.handles[name], name, camera_id, cameras[camera_id])
        return None

    # --- health --------------------------------------------------------------------------------------
    def health(self, hosted: HostedCamera) -> asyncio.Future[dict[str, Any]]:
        """The camera's health report, asked in one call per host for every camera asked in the same loop turn
        (the supervisor's health round gathers all units at once: k cameras in a host cost one RPC, not k).
        The future raises ``CameraNotHosted`` for a recorder the host no longer runs, or the RPC's error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        batch = self._health_batches.get(hosted.host_name)
        if batch is None:
            batch = self._health_batches[hosted.host_name] = []
            loop.call_soon(self._send_health, hosted.host_name, hosted.host)  # after this turn's callers joined
        batch.append((hosted.camera_id, hosted.token, future))
        return future

    def _send_health(self, host_name: str, host: Any) -> None:
        batch = self._health_batches.pop(host_name, [])
        task = asyncio.get_running_loop().create_task(self._health_call(host_name, host, batch))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def _health_call(
        self, host_name: str, host: Any, batch: list[tuple[str, int, asyncio.Future[dict[str, Any]]]]
    ) -> None:
        try:
            reports = await host.cameras_health.remote([(cid, token) for cid, token, _ in batch])
        except Exception as exc:  # the host is gone or failed: every camera asked gets that error
            self._fail_batch(batch, exc)
            return
        except BaseException:  # this call was cancelled (the supervisor stops): its callers get an error, not hang
            self._fail_batch(batch, RuntimeError("health call cancelled"))
            raise
        for cid, token, future in batch:
            if future.done():  # its caller gave up (timeout)
                continue
            report = reports.get(cid)
            if report is None:
                future.set_exception(CameraNotHosted(f"{host_name} runs no recorder {token} of camera {cid}"))
            else:
                future.set_result(report)

    @staticmethod
    def _fail_batch(batch: list[tuple[str, int, asyncio.Future[dict[str, Any]]]], exc: Exception) -> None:
        for _, _, future in batch:
            if not future.done():
                future.set_exception(exc)

    # --- placing -----------------------------------------------------------------------------------
    def _choose(self, per_host: int) -> str | None:
        """The fullest host that still has room (fewest processes), or ``None``: a new host is needed."""
        best: tuple[int, str] | None = None
        for name in self.handles:
            used = len(self.assigned.get(name, {})) + len(self._pending.get(name, set()))
            if used < per_host and (best is None or used > best[0]):
                best = (used, name)
        return None if best is None else best[1]

    def _new_host(self, scheduling_strategy: Any) -> str:
        """A new host under the lowest free name (a name Ray still holds for a host just killed is skipped)."""
        for index in itertools.count():
            name = recorder_host_name(index)
            if name in self.handles:
                continue
            try:
                handle = RecorderHost.options(  # type: ignore[attr-defined]
                    name=name, namespace=self.namespace, lifetime="detached", scheduling_strategy=scheduling_strategy,
                ).remote(name, self.namespace, self.log_level())  # fmt: skip
            except ValueError:  # taken: a host this supervisor does not know yet, or one still dying
                continue
            self.handles[name] = handle
            self.assigned[name] = {}
            logger.info("started %s", name)
            return name
        raise AssertionError("unreachable")

    async def create(
        self, per_host: int, start: RecorderStart, *, scheduling_strategy: Any = "DEFAULT", timeout_s: float = 30.0
    ) -> HostedCamera:
        """Record ``start.camera`` in a host with room (a new one if none); a dead host is dropped and one retry
        made."""
        camera = start.camera
        await self.refresh()
        last: BaseException | None = None
        for _ in range(2):
            name = self._choose(per_host) or self._new_host(scheduling_strategy)
            self._pending.setdefault(name, set()).add(camera.id)
            try:
                token = await asyncio.wait_for(self.handles[name].add_camera.remote(start), timeout_s)
            except ray.exceptions.RayActorError as exc:
                last = exc
                logger.warning("%s is gone (%s); placing camera %s elsewhere", name, exc.__class__.__name__, camera.id)
                self._drop_host(name)
                continue
            finally:
                self._pending.get(name, set()).discard(camera.id)
            self.assigned.setdefault(name, {})[camera.id] = int(token)
            return HostedCamera(self, self.handles[name], name, camera.id, int(token))
        assert last is not None
        raise last

    def kill_camera(self, hosted: HostedCamera) -> None:
        cameras = self.assigned.get(hosted.host_name, {})
        if cameras.get(hosted.camera_id) == hosted.token:
            del cameras[hosted.camera_id]
        hosted.host.camera_kill.remote(hosted.camera_id, hosted.token)
        if not cameras and not self._pending.get(hosted.host_name) and hosted.host_name in self.handles:
            logger.info("%s records no camera any more; stopping it", hosted.host_name)
            self._drop_host(hosted.host_name)

    def _drop_host(self, name: str) -> None:
        handle = self.handles.pop(name, None)
        self.assigned.pop(name, None)
        if handle is not None:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)

    def shutdown(self) -> None:
        """Kill every host (the supervisor's clean stop, after each camera was stopped)."""
        for name in list(self.handles):
            self._drop_host(name)
