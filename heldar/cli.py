"""The operator-facing pieces of the ``heldar`` command line, free of the runtime.

The command line itself (the composition root, which wires ``api`` and ``actors`` together) is
``api/cli.py``; this module holds what it uses that needs neither: reading settings with a one-line error,
the env file (``--env-file``, ``HELDAR_ENV_FILE``), the warning about ``HELDAR_*`` variables that are no
setting (a typo must not silently do nothing), the ``config`` listings (safe to pipe into ``head``; the
effective values with secrets masked; the example env file), progress lines, and the start-up checks that run
before anything is started (is the API port free).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from config import Settings, SettingsError, load_settings
from config.settings import ENV_PREFIX, SECRET_FIELDS, UPSTREAM_OTHER_UNIT, env_name, variable_set_for
from heldar.logging_setup import setup_from_settings
from heldar.logging_setup import setup_logging as _setup_logging
from heldar.store.database import DatabaseUnreachable, DataDirInUse

logger = logging.getLogger(__name__)

ENV_FILE_VARIABLE = "HELDAR_ENV_FILE"
# HELDAR_* names that are read outside Settings (the worker's key, the simulator's cache, the test suite's tools).
OTHER_VARIABLES = frozenset({
    ENV_FILE_VARIABLE, "HELDAR_API_KEY", "HELDAR_TEST_DATABASE_URL", "HELDAR_HELM", "HELDAR_PROMTOOL",
    "HELDAR_DOCKER_BUILD", "HELDAR_TOOLS_CACHE", "HELDAR_FAKECAM_CACHE",
})  # fmt: skip
MASK = "********"


class OperatorError(RuntimeError):
    """Something the operator must fix (a wrong key, a missing file); the message says what. One line, exit 1."""


class StartupError(OperatorError):
    """An operator error found while starting (port in use, cluster unreachable); the message says the fix."""


class EnvFileError(OperatorError):
    """The env file is missing or has a line that is not NAME=VALUE."""


# Errors main() turns into one line on stderr and exit status 1, never a traceback.
OPERATOR_ERRORS: tuple[type[BaseException], ...] = (OperatorError, DataDirInUse, DatabaseUnreachable)
EXIT_OPERATOR_ERROR = 1
EXIT_BAD_SETTING = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def settings_or_exit(*, warn: bool = True) -> Settings:
    """The settings, or exit 2 with one line naming the bad variable. First warns about ``HELDAR_*`` variables
    that are no setting (a typo that also breaks the start is explained before the error)."""
    if warn:
        warn_unknown_variables()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"heldar: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING) from None
    return settings


def setup_logging(settings: Settings | str) -> None:
    """The process's logging from its settings (``HELDAR_LOG_LEVEL``, ``_LOG_FORMAT``, ``_ACCESS_LOG``)."""
    if isinstance(settings, str):
        _setup_logging(settings)
    else:
        setup_from_settings(settings)


# --- the env file ------------------------------------------------------------------------------------------


def parse_env_file(text: str, source: str = "env file") -> dict[str, str]:
    """``NAME=VALUE`` lines (``export NAME=VALUE`` too); blank lines and ``#`` comments are skipped; a value in
    matching single or double quotes loses them. There are no inline comments: ``#`` after a value is a value."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not (name.replace("_", "a").isalnum() and not name[0].isdigit()):
            raise EnvFileError(f"{source} line {number}: expected NAME=VALUE, got {raw.strip()[:40]!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def apply_env_file(path: str | os.PathLike[str] | None, environ: Any = None) -> dict[str, str]:
    """Read ``path`` (or ``$HELDAR_ENV_FILE``) into ``environ``; variables already set there win. Returns the
    names and values it set (what ``heldar config --effective`` shows as coming from the file)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_FILE_VARIABLE) or None
    if path is None:
        return {}
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(f"env file {file} does not exist; check --env-file or {ENV_FILE_VARIABLE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
        raise EnvFileError(f"cannot read env file {file} ({reason})") from None
    applied = {}
    for name, value in parse_env_file(text, f"env file {file}").items():
        if name not in environ:
            environ[name] = value
            applied[name] = value
    return applied


# --- HELDAR_* variables that are no setting ------------------------------------------------------------------


def known_variables() -> set[str]:
    from config.settings import Settings as _Settings

    names = set(OTHER_VARIABLES)
    for field, info in _Settings.model_fields.items():
        names.add(env_name(field))
        alias = info.validation_alias
        for choice in getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else []):
            if isinstance(choice, str):
                names.add(choice.upper())
    return names


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``HELDAR_*`` variables no setting reads, each with the closest real name (or None)."""
    environ = os.environ if environ is None else environ
    known = known_variables()
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
        found.append((name, close[0] if close else None))
    return found


def warn_unknown_variables(environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """One warning line on stderr per ``HELDAR_*`` variable that does nothing; returns how many."""
    unknown = unknown_variables(environ)
    for name, close in unknown:
        hint = f"; did you mean {close}?" if close else "; `heldar config` lists the settings"
        if name.upper() in UPSTREAM_OTHER_UNIT:
            hint = f"; it is upstream's name, here use {UPSTREAM_OTHER_UNIT[name.upper()]}"
        print(f"heldar: warning: {name} is not a heldar setting and does nothing{hint}", file=out or sys.stderr)
    return len(unknown)


# --- heldar config --------------------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """A URL with its password replaced by ``MASK`` (user, host and database stay readable)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return MASK


def shown_value(field: str, value: object) -> str:
    """A setting's value as ``heldar config --effective`` prints it: secrets masked, URLs without passwords."""
    if value is None:
        return ""
    text = str(value)
    if field.endswith("_url"):
        return mask_url(text)
    if field in SECRET_FIELDS:
        return MASK
    return text


def effective_rows(
    settings: Settings, from_file: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(variable, effective value, where it came from: env, env file or default) for every setting."""
    environ = os.environ if environ is None else environ
    rows = []
    for field in type(settings).model_fields:
        name, read = env_name(field), variable_set_for(field, environ)
        if read in from_file:
            source = "env file"
        elif environ.get(read, "") != "":
            source = "env"
        else:
            source = "default"
        if source != "default" and read != name:
            source += f" ({read})"  # read under upstream's spelling
        rows.append((name, shown_value(field, getattr(settings, field)), source))
    return rows


def example_env_lines(rows: Iterable[tuple[str, str, str]]) -> list[str]:
    """``config/heldar.example.env``: every setting, commented out at its default, under its description."""
    lines = [
        "# heldar settings: every HELDAR_* variable with its default (generated by `heldar config --example`).",
        "# Use it with `heldar --env-file heldar.env serve` or HELDAR_ENV_FILE=heldar.env; uncomment what you change.",
        "# Variables already set in the environment win over the file. One NAME=VALUE a line, no inline comments.",
    ]
    for name, default, description in rows:
        lines += ["", f"# {description}".rstrip(), f"#{name}={default}"]
    return lines


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
