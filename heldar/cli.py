"""The operator-facing pieces of the ``heldar`` command line, free of the runtime.

The command line itself (the composition root, which wires ``api`` and ``actors`` together) is
``api/cli.py``; this module holds what it uses that needs neither: reading settings with a one-line error,
the logging set-up, the ``config`` listing (safe to pipe into ``head``), progress lines, and the start-up
checks that run before anything is started (is the API port free).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterable
from typing import TextIO

from config import Settings, SettingsError, load_settings
from heldar.store.database import DatabaseUnreachable, DataDirInUse

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """An operator error found while starting (port in use, cluster unreachable); the message says the fix."""


# Errors main() turns into one line on stderr and exit status 1, never a traceback.
OPERATOR_ERRORS: tuple[type[BaseException], ...] = (StartupError, DataDirInUse, DatabaseUnreachable)
EXIT_OPERATOR_ERROR = 1
EXIT_BAD_SETTING = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def settings_or_exit() -> Settings:
    """The settings, or exit 2 with one line naming the bad variable."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"heldar: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def progress(message: str) -> None:
    """One progress line on stderr while something slow starts (shown whatever the log level)."""
    print(f"heldar: {message}", file=sys.stderr, flush=True)


def format_settings(rows: Iterable[tuple[str, str, str]]) -> list[str]:
    """``heldar config`` lines: name, default and description in columns as wide as their longest entry."""
    rows = list(rows)
    name_w = max((len(n) for n, _, _ in rows), default=0)
    default_w = min(max((len(d) for _, d, _ in rows), default=0), 40)
    return [f"{name:{name_w}}  {default:{default_w}}  {description}".rstrip() for name, default, description in rows]


def write_lines(lines: Iterable[str], out: TextIO | None = None) -> int:
    """Print ``lines``; a reader that goes away (``heldar config | head``) ends it quietly with 141."""
    out = out or sys.stdout
    try:
        for line in lines:
            out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)
        return EXIT_BROKEN_PIPE
    return 0


def check_port_free(host: str, port: int) -> None:
    """Raise ``StartupError`` when ``host:port`` cannot be bound (in use, or not an address of this host)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no clash
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {port} on {host} is already in use (another heldar serve?); stop that process "
                    "or set HELDAR_API_PORT to a free port"
                ) from None
            if exc.errno == errno.EACCES:
                raise StartupError(
                    f"no permission to listen on port {port}; use a port above 1023 in HELDAR_API_PORT"
                ) from None
            raise StartupError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc.__class__.__name__}); "
                "check HELDAR_API_HOST and HELDAR_API_PORT"
            ) from None


def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Raise ``StartupError`` when ``HELDAR_RAY_ADDRESS`` names a host:port nobody answers on.

    ``ray.init`` itself retries an unreachable address for ever; ``auto`` (and no address) are left to Ray.
    """
    if not address or address == "auto":
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port_text = hostport.rpartition(":")
    if not host or not port_text.isdigit():
        raise StartupError(f"HELDAR_RAY_ADDRESS {address!r} is not host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or exc.__class__.__name__).lower()
        raise StartupError(
            f"cannot reach the Ray cluster at {hostport} ({reason}); check HELDAR_RAY_ADDRESS, "
            "or unset it to start a local Ray"
        ) from None


if __name__ == "__main__":  # the old entry point: say where the command is now rather than exit silently
    print("heldar: run `heldar` (or `python -m api`); heldar.cli holds only the command's helpers", file=sys.stderr)
    raise SystemExit(EXIT_BAD_SETTING)
