"""``heldar fakecam``: run the camera simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from heldar.fakecam.faults import FaultMode
from heldar.fakecam.server import FakeCamSim
from heldar.fakecam.source import AUDIO_CODECS, EncoderSettings, StreamProfile, TestPatternSource

logger = logging.getLogger(__name__)


def _flap(value: str) -> tuple[str, float, float]:
    try:
        name, down, every = value.rsplit(":", 2)
        down_s, every_s = float(down), float(every)
    except ValueError:
        raise argparse.ArgumentTypeError("expected NAME:DOWN_S:EVERY_S") from None
    if not name or down_s <= 0 or every_s <= down_s:
        raise argparse.ArgumentTypeError("need a name and 0 < DOWN_S < EVERY_S")
    return name, down_s, every_s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8554, help="RTSP port (default 8554)")
    parser.add_argument("--control-port", type=int, default=8555, help="HTTP control port (default 8555)")
    parser.add_argument("--cameras", type=int, default=0, metavar="N", help="create cam1..camN")
    parser.add_argument("--name", action="append", default=[], help="add a camera by name (repeatable)")
    parser.add_argument("--width", type=int, help="picture width (default 640; looped 1920)")
    parser.add_argument("--height", type=int, help="picture height (default 360; looped 1080)")
    parser.add_argument("--fps", type=int, help="frames per second (default 15)")
    parser.add_argument("--username", help="credentials for every camera")
    parser.add_argument("--password", help="password for --username")
    parser.add_argument("--auth", choices=("any", "basic", "digest"), default="any")
    parser.add_argument(
        "--flap", type=_flap, action="append", default=[], metavar="NAME:DOWN_S:EVERY_S",
        help="make NAME go down for DOWN_S seconds every EVERY_S seconds (repeatable)",
    )  # fmt: skip
    parser.add_argument("--replay-minutes", type=float, default=15.0, help="footage kept for replay")
    parser.add_argument("--replay-speed", type=float, default=8.0, help="replay pacing (x real time)")
    parser.add_argument("--no-clock", action="store_true", help="do not burn the UTC clock into the picture")
    parser.add_argument("--codec", choices=("h264", "h265"), default="h264", help="video codec (default h264)")
    parser.add_argument("--audio", choices=AUDIO_CODECS, help="also send a G.711 audio track")
    parser.add_argument(
        "--looped", action="store_true",
        help="serve a clip encoded once (cached) in a loop: 1920x1080, 15 fps, 1 s GOP, 4000 kbit/s unless "
        "--width/--height/--fps/--bitrate say otherwise; serving costs no encoding",
    )  # fmt: skip
    parser.add_argument("--bitrate", type=int, metavar="KBPS", help="target bitrate (default: constant quality; "
                        "looped: 4000)")  # fmt: skip
    parser.add_argument("--cache-dir", help="where the looped clip is kept (default ~/.cache/heldar/fakecam)")
    parser.add_argument(
        "--device-ports",
        action="store_true",
        help="also serve each camera alone on port+1.. with Hikvision paths",
    )


def register(subparsers: Any) -> None:
    """Add the ``fakecam`` subcommand; its handler is ``args.func(args) -> int``."""
    parser = subparsers.add_parser(
        "fakecam", help="run the RTSP camera simulator", description="Run the RTSP camera simulator."
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


async def _serve(args: argparse.Namespace) -> int:
    names = [f"cam{i}" for i in range(1, args.cameras + 1)] + list(args.name)
    if not names:
        names = ["cam1"]
    names = list(dict.fromkeys(names))
    profile = None
    if args.looped or args.codec != "h264" or args.audio or args.bitrate:
        profile = StreamProfile(
            codec=args.codec, audio=args.audio, looped=args.looped, width=args.width, height=args.height,
            fps=args.fps, bitrate_kbps=args.bitrate,
        )  # fmt: skip
    sim = FakeCamSim(
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        settings=EncoderSettings(width=args.width or 640, height=args.height or 360, fps=args.fps or 15),
        source=TestPatternSource(clock=not args.no_clock),
        replay_minutes=args.replay_minutes,
        replay_speed=args.replay_speed,
        profile=profile,
        cache_dir=args.cache_dir,
    )
    for name in names:
        sim.add_camera(name, args.username, args.password, auth=args.auth)
    unknown = [f[0] for f in args.flap if f[0] not in sim.cameras]
    if unknown:
        print(f"--flap names unknown cameras: {', '.join(unknown)}")
        return 2
    await sim.start()
    if args.device_ports:
        for i, name in enumerate(names, start=1):
            await sim.add_device(name, args.port + i)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"fakecam: {len(names)} camera(s) on rtsp://{sim.advertised_host}:{sim.port}/", flush=True)
    for name in names:
        line = f"  {name}: {sim.url(name)}  replay: {sim.replay_url_template(name)}"
        if sim.cameras[name].device_port:
            line += f"  device: {sim.device_url(name)}"
        print(line, flush=True)
    if sim.control_port is not None:
        print(f"control: http://{sim.advertised_host}:{sim.control_port}/cameras", flush=True)
    flappers = [asyncio.create_task(_flapper(sim, *f)) for f in args.flap]
    try:
        await stop.wait()
    finally:
        for task in flappers:
            task.cancel()
        await asyncio.gather(*flappers, return_exceptions=True)
        await sim.stop()
    print("fakecam: stopped", flush=True)
    return 0


async def _flapper(sim: FakeCamSim, name: str, down_s: float, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s - down_s)
        if name not in sim.cameras:
            return
        sim.set_fault(name, FaultMode.DOWN)
        await asyncio.sleep(down_s)
        if name not in sim.cameras:
            return
        sim.set_fault(name, FaultMode.RESUME)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heldar.fakecam", description="Run the RTSP camera simulator.")
    add_arguments(parser)
    return run_command(parser.parse_args(argv))
