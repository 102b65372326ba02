"""The ``heldar`` command line.

Subcommands that need the runtime (``serve``) are loaded by module path when run, so the core package
keeps its rule of never importing ``actors`` or ``api``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from config import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"heldar: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def _cmd_serve(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _setup_logging(settings.log_level)
    server: Callable[[Settings], int] = importlib.import_module("api.server").run
    return server(settings)


def _cmd_demo(_: argparse.Namespace) -> int:
    """The main job on embedded defaults; auth is off unless HELDAR_AUTH_ENABLED says otherwise."""
    os.environ.setdefault("HELDAR_AUTH_ENABLED", "false")
    settings = _settings_or_exit()
    _setup_logging(settings.log_level)
    if not settings.auth_enabled:
        banner = "!" * 72
        print(f"{banner}\n!! DEMO MODE: authentication is OFF. Do not expose this port\n{banner}", flush=True)
    demo: Callable[[Settings], int] = importlib.import_module("api.demo").run
    return demo(settings)


def _cmd_migrate(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _setup_logging(settings.log_level)
    prepare = importlib.import_module("api.server").prepare_database

    async def _run() -> None:
        _, embedded = await prepare(settings)
        if embedded is not None:
            embedded.stop()

    asyncio.run(_run())
    print("database is up to date")
    return 0


def _cmd_config(_: argparse.Namespace) -> int:
    from config.settings import describe_settings

    for name, default, description in describe_settings():
        print(f"{name:40} {default:24} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heldar", description="Open camera supervision kernel.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the API, supervisor and (embedded) database").set_defaults(handler=_cmd_serve)
    sub.add_parser("demo", help="serve with simulated cameras on the embedded defaults").set_defaults(handler=_cmd_demo)
    sub.add_parser("migrate", help="apply database migrations and exit").set_defaults(handler=_cmd_migrate)
    sub.add_parser("config", help="list every HELDAR_* setting").set_defaults(handler=_cmd_config)
    for module in ("heldar.fakecam.cli", "heldar.worker.cli"):
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError:
            pass
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None) or args.func
    return int(handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
