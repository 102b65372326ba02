"""The ``heldar`` command (console script ``heldar = "api.cli:main"``; also ``python -m api``).

This is the composition root: it wires the core (``heldar``), the API and the actors together, so it lives
outside ``heldar/``, which never imports ``actors`` or ``api``. Heavy modules (Ray, uvicorn) are imported only
by the subcommands that need them, so ``heldar config`` and ``heldar --version`` answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
from collections.abc import Sequence

from heldar import __version__
from heldar.cli import (
    EXIT_BAD_SETTING,
    EXIT_OPERATOR_ERROR,
    OPERATOR_ERRORS,
    EnvFileError,
    apply_env_file,
    effective_rows,
    example_env_lines,
    format_settings,
    settings_or_exit,
    setup_logging,
    warn_unknown_variables,
    write_lines,
)

ENV_HELP = (
    "Everything is configured with HELDAR_* environment variables, or an env file (--env-file FILE or\n"
    "HELDAR_ENV_FILE; config/heldar.example.env lists every one); `heldar config` lists them with their\n"
    "defaults, `heldar config --effective` with the values this shell would run with."
)
EXIT_INTERRUPTED = 130
BIND_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)
_FROM_ENV_FILE: dict[str, str] = {}  # what --env-file / HELDAR_ENV_FILE set (heldar config --effective)


def _cmd_serve(_: argparse.Namespace) -> int:
    settings = settings_or_exit()
    setup_logging(settings)
    from api.server import preflight, run

    return run(settings, held=preflight(settings))


def _cmd_api(_: argparse.Namespace) -> int:
    settings = settings_or_exit()
    setup_logging(settings)
    from api.server import preflight_api, run

    return run(settings, held=preflight_api(settings), mode="api")


def _cmd_demo(_: argparse.Namespace) -> int:
    """The main job on embedded defaults; auth is off unless HELDAR_AUTH_ENABLED says otherwise."""
    os.environ.setdefault("HELDAR_AUTH_ENABLED", "false")
    settings = settings_or_exit()
    setup_logging(settings)
    from api.demo import run
    from api.server import preflight

    held = preflight(settings)
    if not settings.auth_enabled:
        banner = "!" * 72
        print(f"{banner}\n!! DEMO MODE: authentication is OFF. Do not expose this port\n{banner}", flush=True)
    return run(settings, held=held)


def _cmd_migrate(_: argparse.Namespace) -> int:
    settings = settings_or_exit()
    setup_logging(settings)
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


def _cmd_config(args: argparse.Namespace) -> int:
    from config.settings import describe_settings

    if args.example:
        return write_lines(example_env_lines(describe_settings()))
    if args.effective:
        settings = settings_or_exit()
        return write_lines(format_settings(effective_rows(settings, _FROM_ENV_FILE)))
    warn_unknown_variables()
    return write_lines(format_settings(describe_settings()))


def _env_file_option(parser: argparse.ArgumentParser, *, default: object = None) -> None:
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        default=default,
        help="read HELDAR_* settings from FILE (NAME=VALUE lines); variables already set win. Also HELDAR_ENV_FILE",
    )


def _describe(parser: argparse.ArgumentParser, summary: str, epilog: str) -> None:
    parser.description = f"{summary[0].upper()}{summary[1:]}.\n\n{ENV_HELP}"
    parser.epilog = epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, epilog: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=summary)
    _describe(parser, summary, epilog)
    _env_file_option(parser, default=argparse.SUPPRESS)  # after the command too: heldar serve --env-file F
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heldar",
        description=f"Open camera supervision kernel.\n\n{ENV_HELP}",
        epilog="examples:\n"
        "  heldar demo                          # four simulated cameras, embedded everything, auth off\n"
        "  heldar --env-file /etc/heldar.env serve\n"
        "  heldar config --effective            # what this shell would run with (secrets masked)\n"
        "  heldar <command> --help              # each command, with examples",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"heldar {__version__}")
    _env_file_option(parser)
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
        "api",
        "run one stateless API replica of a running cluster (HELDAR_RAY_ADDRESS and HELDAR_DATABASE_URL)",
        "examples:\n"
        "  ray start --head --port=6379                 # once, on the head node (and ray start --address on others)\n"
        "  HELDAR_RAY_ADDRESS=10.0.0.5:6379 HELDAR_DATABASE_URL=postgresql://heldar@db/heldar heldar api\n"
        "  HELDAR_RAY_ADDRESS=auto HELDAR_DATABASE_URL=... HELDAR_API_PORT=8001 heldar api   # a second replica\n\n"
        "It joins the cluster, makes sure a supervisor runs there and gives it these settings, then serves.\n"
        "It never starts or stops Ray, the database or the supervisor: run as many replicas as you like behind\n"
        "a load balancer; stopping or killing one interrupts neither recording nor the others' clients.",
    ).set_defaults(handler=_cmd_api)
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
    config = _add(
        sub,
        "config",
        "list every HELDAR_* setting with its default, or the effective values",
        "examples:\n"
        "  heldar config | grep RETENTION\n"
        "  heldar --env-file prod.env config --effective      # value and source (env, env file, default)\n"
        "  heldar config --example > heldar.env               # every setting, commented out at its default\n\n"
        "--effective masks secrets (passwords, keys; a URL keeps everything but its password).",
    )
    shown = config.add_mutually_exclusive_group()
    shown.add_argument("--effective", action="store_true", help="the values in effect and where each comes from")
    shown.add_argument("--example", action="store_true", help="print an env file with every setting")
    config.set_defaults(handler=_cmd_config)
    from heldar.fakecam.cli import register as register_fakecam
    from heldar.worker.cli import register as register_worker

    register_fakecam(sub)
    _describe(
        sub.choices["fakecam"],
        "run the RTSP camera simulator (test patterns, faults, Hikvision-style replay) until Ctrl-C",
        "examples:\n"
        "  heldar fakecam --cameras 4                       # cam1..cam4 on rtsp://127.0.0.1:8554/\n"
        "  heldar fakecam --name door --flap door:10:60     # door drops out 10 s every minute\n"
        "  heldar fakecam --cameras 2 --username admin --password secret --auth digest",
    )
    register_worker(sub)
    from heldar.media.verify_cli import register as register_verify

    register_verify(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None) or args.func
    try:
        _FROM_ENV_FILE.clear()
        _FROM_ENV_FILE.update(apply_env_file(getattr(args, "env_file", None)))
    except EnvFileError as exc:
        print(f"heldar: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_SETTING
    try:
        return int(handler(args) or 0)
    except OPERATOR_ERRORS as exc:
        print(f"heldar: {exc}", file=sys.stderr, flush=True)
        return EXIT_OPERATOR_ERROR
    except OSError as exc:
        if exc.errno not in BIND_ERRORS:
            raise
        # A listener that cannot bind (heldar fakecam's ports, say): the OS's reason, one line.
        print(f"heldar: {exc.strerror or exc}; pick a free port (see --help)", file=sys.stderr, flush=True)
        return EXIT_OPERATOR_ERROR
    except KeyboardInterrupt:  # Ctrl-C before a command installed its own handler: no traceback
        print("heldar: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
