"""``heldar worker --url http://api:8000 --api-key vok_...``: the reference HTTP worker."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from heldar.perception.analyzers import load_analyzer_specs
from heldar.worker.runner import Worker, WorkerOptions


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_analyzer_specs(args.analyzers)
    options = WorkerOptions(url=args.url, api_key=args.api_key, lease_every_s=args.lease_every)
    if args.worker_id:
        options.worker_id = args.worker_id
    if args.task_types:
        options.task_types = [t.strip() for t in args.task_types.split(",") if t.strip()]
    worker = Worker(options)

    def _stop(*_: Any) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run(max_seconds=args.seconds)
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("worker", help="run a detection worker against a heldar API (worker SDK over HTTP)")
    parser.add_argument("--url", required=True, help="API base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None, help="an integration API key (vok_...)")
    parser.add_argument("--worker-id", default=None, help="default <host>:<pid>")
    parser.add_argument("--task-types", default=None, help="only these task types (comma separated)")
    parser.add_argument("--analyzers", default=None, help="extra analyzers: name=module:factory,...")
    parser.add_argument("--lease-every", type=float, default=10.0, help="seconds between lease renewals")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: run)")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=_run)
