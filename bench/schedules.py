"""Recording-schedule maths cost: what the 10 s reconcile, ``/gaps`` and the gap detector pay per call.

``python -m bench.schedules [--json FILE] [--repeat N]``. Pure CPU, no services. Each case is timed for a
zone with DST (``Europe/Berlin``) against the same case in ``UTC`` (the baseline: no offset changes to
find), with a week-day business-hours schedule set (3 schedules, one wrapping past midnight).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from heldar.schedules import Schedule, parse_clock, should_record, windows_between

AT = datetime(2026, 3, 28, 12, tzinfo=UTC)  # the weekend Berlin springs forward


def schedules(zone: str) -> list[Schedule]:
    def one(days: set[int], start: str, end: str) -> Schedule:
        return Schedule(frozenset(days), parse_clock(start), parse_clock(end, end=True), zone)

    return [one({0, 1, 2, 3, 4}, "07:00", "19:00"), one({5}, "09:00", "13:00"), one({6}, "22:00", "06:00")]


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def cases(zone: str) -> dict[str, Callable[[], Any]]:
    s = schedules(zone)
    fleet = [s] * 1000
    return {
        "should_record x1000 cameras (one reconcile)": lambda: [should_record("scheduled", c, AT) for c in fleet],
        "windows_between 24 h (/gaps default)": lambda: windows_between(s, AT - timedelta(hours=24), AT),
        "windows_between 366 d (/gaps maximum)": lambda: windows_between(s, AT - timedelta(days=366), AT),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the JSON here (table to stdout)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"repeat": args.repeat, "cases": {}}
    for zone in ("UTC", "Europe/Berlin"):
        for name, fn in cases(zone).items():
            fn()  # warm the zone cache
            samples = timed(fn, args.repeat)
            results["cases"].setdefault(name, {})[zone] = {"median_ms": statistics.median(samples),
                                                           "max_ms": max(samples), "samples_ms": samples}  # fmt: skip
    text = json.dumps(results, indent=2)
    table = sys.stdout if args.json else sys.stderr
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        print(text)
    print(f"{'case':48} {'UTC ms':>10} {'Berlin ms':>10} {'ratio':>7}", file=table)
    for name, by_zone in results["cases"].items():
        base, dst = by_zone["UTC"]["median_ms"], by_zone["Europe/Berlin"]["median_ms"]
        print(f"{name:48} {base:10.3f} {dst:10.3f} {dst / base if base else 0:7.2f}", file=table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
