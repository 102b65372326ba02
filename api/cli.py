"""The ``heldar`` command (console script ``heldar = "api.cli:main"``; also ``python -m api``).

This is the composition root: it wires the core (``heldar``), the API and the actors together, so it lives
outside ``heldar/``, which never imports ``actors`` or ``api``. Heavy modules (Ray, uvicorn) are imported only
by the subcommands that need them, so ``heldar config`` and ``heldar --version`` answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from heldar import __version__
from heldar.cli import (
    EXIT_OPERATOR_ERROR,
    OPERATOR_ERRORS,
    format_settings,
    settings_or_exit,
    setup_logging,
    write_lines,
)

ENV_HELP = (
    "Everything is configured with HELDAR_* environment variables; `heldar config` lists them with their\n"
    "defaults (README.md has the full table)."
)


def _cmd_serve(_: argparse.Namespace) -> int:
    settings = settings_or_exit()
    setup_logging(settings.log_level)
    from api.server import preflight, run

    return run(settings, held=preflight(settings))


def _cmd_demo(_: argparse.Namespace) -> int:
    """The main job on embedded defaults; auth is off unless HELDAR_AUTH_ENABLED says otherwise."""
    os.environ.setdefault("HELDAR_AUTH_ENABLED", "false")
    settings = settings_or_exit()
    setup_logging(settings.log_level)
    from api.demo import run
    from api.server import preflight

    held = preflight(settings)
    if not settings.auth_enabled:
        banner = "!" * 72
        print(f"{banner}\n!! DEMO MODE: authentication is OFF. Do not expose this port\n{banner}", flush=True)
    return run(settings, held=held)


def _cmd_migrate(_: argparse.Namespace) -> int:
    settings = settings_or_exit()
    setup_logging(settings.log_level)
    from heldar.store.database import DataDirLock, prepare_database

    lock = DataDirLock(settings.data_dir).acquire() if settings.database_url is None else None
    try:

        async def _run() -> None:
            _, embedded = await prepare_database(
                settings.database_url, settings.data_dir, connect_timeout_s=settings.db_connect_timeout_s
            )
            if embedded is not None:
                embedded.stop()

        asyncio.run(_run())
    finally:
        if lock is not None:
            lock.release()
    print("database is up to date")
    return 0


def _cmd_config(_: argparse.Namespace) -> int:
    from config.settings import describe_settings

    return write_lines(format_settings(describe_settings()))


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, epilog: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.\n\n{ENV_HELP}",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heldar", description="Open camera supervision kernel.")
    parser.add_argument("--version", action="version", version=f"heldar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add(
        sub,
        "serve",
        "run the API, the supervisor and (unless HELDAR_DATABASE_URL is set) an embedded PostgreSQL",
        "examples:\n"
        "  heldar serve                      # embedded PostgreSQL under ./data/pg, a local Ray\n"
        "  HELDAR_DATABASE_URL=postgresql://heldar@db/heldar HELDAR_RAY_ADDRESS=auto heldar serve\n"
        "  HELDAR_API_PORT=8080 HELDAR_DATA_DIR=/srv/heldar heldar serve\n\n"
        "SIGTERM or Ctrl-C stops it and whatever it started (open event streams end at once).\n"
        "One heldar serve per embedded data directory; several may share an external database.",
    ).set_defaults(handler=_cmd_serve)
    _add(
        sub,
        "demo",
        "serve with four simulated cameras on the embedded defaults (auth off)",
        "example:\n  heldar demo      # then open the printed /docs URL",
    ).set_defaults(handler=_cmd_demo)
    _add(
        sub,
        "migrate",
        "apply database migrations and exit",
        "example:\n  HELDAR_DATABASE_URL=postgresql://heldar@db/heldar heldar migrate",
    ).set_defaults(handler=_cmd_migrate)
    _add(
        sub,
        "config",
        "list every HELDAR_* setting with its default",
        "example:\n  heldar config | grep RETENTION",
    ).set_defaults(handler=_cmd_config)
    from heldar.fakecam.cli import register as register_fakecam
    from heldar.worker.cli import register as register_worker

    register_fakecam(sub)
    register_worker(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None) or args.func
    try:
        return int(handler(args) or 0)
    except OPERATOR_ERRORS as exc:
        print(f"heldar: {exc}", file=sys.stderr, flush=True)
        return EXIT_OPERATOR_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
