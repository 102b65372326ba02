"""``heldar demo``: the all-in-one runtime on embedded defaults, recording simulated cameras.

It starts the camera simulator with a few cameras (one of them drops out now and then), registers
them with ANR on, and serves the API: the dropping camera's gaps appear and are back-filled from the
simulator's kept footage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import ray

from api.server import Preflight, preflight
from api.server import run as serve
from config import Settings
from heldar.cli import progress
from heldar.errors import Conflict
from heldar.fakecam import FakeCamSimThread
from heldar.models.cameras import Camera, CameraCreate, RecordingDefaults
from heldar.store import cameras as camera_store
from heldar.store.database import create_pool

logger = logging.getLogger(__name__)

DEMO_CAMERAS = ("lobby", "loading-dock", "gate", "parking")
FLAPPING_CAMERA = "parking"
FLAP_EVERY_S = 60.0
FLAP_DOWN_S = 10.0
DEMO_SEGMENT_S = 10


def _flap(sim: FakeCamSimThread, stop: threading.Event) -> None:
    """Take the flapping camera down for FLAP_DOWN_S every FLAP_EVERY_S, until ``stop``."""
    while not stop.wait(FLAP_EVERY_S - FLAP_DOWN_S):
        logger.info("demo: %s drops out for %.0fs", FLAPPING_CAMERA, FLAP_DOWN_S)
        sim.set_fault(FLAPPING_CAMERA, "down")
        stop.wait(FLAP_DOWN_S)
        sim.set_fault(FLAPPING_CAMERA, "resume")


async def _register(database_url: str, sim: FakeCamSimThread) -> None:
    pool = await create_pool(database_url, max_size=1)
    try:
        for name in DEMO_CAMERAS:
            body = CameraCreate(
                id=name, name=name.replace("-", " ").title(), main_stream_url=sim.url(name),
                segment_seconds=DEMO_SEGMENT_S, anr_enabled=True,
                anr_replay_url_template=sim.replay_url_template(name),
            )  # fmt: skip
            camera = Camera.from_create(body, RecordingDefaults())
            try:
                await camera_store.insert_camera(pool, camera)
            except Conflict:
                await camera_store.update_camera(pool, camera)  # simulator ports change between runs
    finally:
        await pool.close()


def run(settings: Settings, *, held: Preflight | None = None) -> int:
    """``held``: ``api.server.preflight``'s result, taken before the simulator starts (taken here if None)."""
    held = held or preflight(settings)
    if not settings.anr_enabled and "HELDAR_ANR_ENABLED" not in os.environ:
        settings.anr_enabled = True
        settings.anr_interval_s = 20
    stop = threading.Event()
    with FakeCamSimThread(port=0, control_port=0) as sim:
        for name in DEMO_CAMERAS:
            sim.add_camera(name)
        flapper = threading.Thread(target=_flap, args=(sim, stop), name="demo-flap", daemon=True)

        def on_ready(database_url: str, supervisor: object) -> None:
            progress(f"registering {len(DEMO_CAMERAS)} demo cameras ...")
            asyncio.run(_register(database_url, sim))
            ray.get(supervisor.reconcile.remote())  # type: ignore[attr-defined]
            flapper.start()

        def banner(base: str) -> list[str]:
            cam = FLAPPING_CAMERA
            return [
                f"  simulator  rtsp://127.0.0.1:{sim.port}/<camera>   control http://127.0.0.1:{sim.control_port}/cameras",
                f"  cameras    {', '.join(DEMO_CAMERAS)}  ({cam} drops out for {FLAP_DOWN_S:.0f}s every"
                f" {FLAP_EVERY_S:.0f}s; ANR back-fills it)",
                f"  watch      {base}/api/v1/health/cameras",
                f"             {base}/api/v1/cameras/{cam}/timeline",
                f"             {base}/api/v1/cameras/{cam}/gaps",
                f"             {base}/api/v1/cameras/{cam}/recording-gaps",
                f"             {base}/api/v1/cameras/{cam}/segments",
                f"  segments   {settings.recordings_root}/<camera>/",
            ]

        try:
            return serve(settings, held=held, on_ready=on_ready, banner_extra=banner)
        finally:
            stop.set()
