"""``heldar worker --url http://api:8000`` (key in ``HELDAR_API_KEY``): the reference HTTP worker."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

from heldar.cli import OperatorError, warn_unknown_variables
from heldar.logging_setup import LOG_FORMATS, setup_logging
from heldar.perception.analyzers import load_analyzer_specs
from heldar.worker.runner import Worker, WorkerOptions

logger = logging.getLogger(__name__)

API_KEY_VARIABLE = "HELDAR_API_KEY"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ARGV_KEY_WARNING = (
    "heldar: warning: --api-key puts the key in the process list, where other users of this machine can read "
    f"it; set {API_KEY_VARIABLE} instead"
)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OperatorError(f"--url {url!r} is not an http(s) URL; e.g. --url http://127.0.0.1:8000")
    return url


def resolve_key(argv_key: str | None, environ: Any = None) -> str | None:
    """The key from ``--api-key`` (with a warning: argv is visible to other users) or ``HELDAR_API_KEY``."""
    environ = os.environ if environ is None else environ
    if argv_key:
        print(ARGV_KEY_WARNING, file=sys.stderr, flush=True)
        return argv_key
    return environ.get(API_KEY_VARIABLE) or None


def _run(args: argparse.Namespace) -> int:
    level = (args.log_level or os.environ.get("HELDAR_LOG_LEVEL") or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise OperatorError(f"--log-level {args.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    fmt = (os.environ.get("HELDAR_LOG_FORMAT") or "text").strip().lower()
    if fmt not in LOG_FORMATS:
        raise OperatorError(f"HELDAR_LOG_FORMAT {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    setup_logging(level, fmt)
    warn_unknown_variables()
    url = check_url(args.url)
    api_key = resolve_key(args.api_key)
    try:
        load_analyzer_specs(args.analyzers)
    except (ValueError, ImportError, AttributeError) as exc:
        raise OperatorError(f"--analyzers: {exc}") from None
    if api_key is None:
        logger.warning("no API key (%s unset): only an API with auth off will accept this worker", API_KEY_VARIABLE)
    options = WorkerOptions(url=url, api_key=api_key, lease_every_s=args.lease_every)
    if args.worker_id:
        options.worker_id = args.worker_id
    if args.task_types:
        options.task_types = [t.strip() for t in args.task_types.split(",") if t.strip()]
    options.summary_every_s = args.summary_every
    worker = Worker(options)

    def _stop(*_: Any) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info("worker %s working for %s", options.worker_id, url)
    worker.run(max_seconds=args.seconds)
    logger.info("%s", worker.summary())
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "worker",
        help="run a detection worker against a heldar API (worker SDK over HTTP)",
        description="Run a detection worker against a heldar API (the worker SDK over HTTP): lease AI tasks, "
        "pull their frames, analyse them and post detections.\n\n"
        f"The key is read from {API_KEY_VARIABLE} (an integration key, vok_...). A key the API refuses (401/403) "
        "ends the worker with one line instead of retrying; every minute it logs a summary line.",
        epilog="examples:\n"
        f"  {API_KEY_VARIABLE}=vok_... heldar worker --url http://127.0.0.1:8000\n"
        f"  {API_KEY_VARIABLE}=vok_... heldar worker --url https://nvr.example --task-types person,vehicle\n"
        "  HELDAR_LOG_FORMAT=json heldar worker --url http://api:8000 --analyzers plates=mypkg.plates:create",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="API base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"the key on the command line (visible to other users: prefer {API_KEY_VARIABLE})",
    )
    parser.add_argument("--worker-id", default=None, help="default <host>:<pid>")
    parser.add_argument("--task-types", default=None, help="only these task types (comma separated)")
    parser.add_argument("--analyzers", default=None, help="extra analyzers: name=module:factory,...")
    parser.add_argument("--lease-every", type=float, default=10.0, help="seconds between lease renewals")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: run)")
    parser.add_argument("--summary-every", type=float, default=60.0, help="seconds between summary lines")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default HELDAR_LOG_LEVEL)")
    parser.set_defaults(handler=_run)
