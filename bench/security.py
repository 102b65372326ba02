"""Login flood: how long an honest login takes while one address floods wrong passwords, with heldar's login
throttling (per-source limit, bounded hashes) against a baseline in the same run with the throttles off.

    python -m bench.security                     # 40 flood requests, 16 at once, default argon2 cost
    python -m bench.security --flood 80 --concurrency 32 --json out.json

Each mode starts its own API (uvicorn in a thread of this process) over one embedded PostgreSQL, fires the
flood from one client address (``x-bench-source``, mapped to the ASGI client as a proxy would) while an
honest user logs in from another address every 0.25 s, and reports the honest logins' latency, the flood's
status codes, the API process's CPU seconds over the flood, and the password hashes actually run. JSON (every
sample) goes to stdout or ``--json FILE``; a short table follows. Other tenants of the box skew the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

ADMIN, ADMIN_PW = "bench-admin", "Bench-Admin-Passw0rd"


class SourceFromHeader:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", []):
                if name == b"x-bench-source":
                    scope = {**scope, "client": (value.decode(), 1)}
        await self.app(scope, receive, send)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_login(port: int, user: str, password: str, source: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/api/v1/auth/login", body=json.dumps({"username": user, "password": password}),
                 headers={"Content-Type": "application/json", "x-bench-source": source})  # fmt: skip
    status = conn.getresponse().status
    conn.close()
    return status, time.perf_counter() - started


def run_mode(name: str, url: str, data_dir: Path, flood: int, concurrency: int, throttled: bool) -> dict[str, Any]:
    import uvicorn

    from api.app import create_app
    from api.auth_wiring import auth_service, bootstrap_admin
    from config import load_settings

    overrides: dict[str, Any] = {
        "data_dir": data_dir, "bootstrap_admin_user": ADMIN, "bootstrap_admin_password": ADMIN_PW,
        "webhooks_enabled": False, "login_max_failures": 0,
    }  # fmt: skip
    if not throttled:  # baseline: what heldar did before (no rate limits, every hash at once)
        overrides.update(login_rate_per_source_per_min=0, login_rate_global_per_min=0, login_max_concurrent_hashes=64)
    settings = load_settings(**overrides)
    asyncio.run(bootstrap_admin(settings, url))
    app = create_app(settings, url)
    service = auth_service(app.state.heldar)
    hashes = Counter[str]()
    inner_verify, inner_dummy = service.passwords.verify, service.passwords.verify_dummy

    def verify(h: str, p: str) -> bool:
        hashes["verify"] += 1
        return inner_verify(h, p)

    def dummy(p: str) -> None:
        hashes["dummy"] += 1
        inner_dummy(p)

    service.passwords.verify, service.passwords.verify_dummy = verify, dummy  # type: ignore[method-assign]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(SourceFromHeader(app), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    me = psutil.Process()
    honest: list[float] = []
    honest_codes: list[int] = []
    stop = threading.Event()

    def honest_loop() -> None:
        while not stop.is_set():
            code, took = post_login(port, ADMIN, ADMIN_PW, "192.0.2.10")
            honest.append(took)
            honest_codes.append(code)
            stop.wait(0.25)

    try:
        post_login(port, ADMIN, ADMIN_PW, "192.0.2.10")  # warm-up
        cpu0 = me.cpu_times()
        started = time.perf_counter()
        h = threading.Thread(target=honest_loop)
        h.start()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            flood_results = list(pool.map(lambda i: post_login(port, ADMIN, f"wrong-{i:05d}-x", "203.0.113.66"),
                                          range(flood)))  # fmt: skip
        wall = time.perf_counter() - started
        stop.set()
        h.join()
        cpu1 = me.cpu_times()
    finally:
        server.should_exit = True
        thread.join(30)
    return {
        "mode": name,
        "flood_requests": flood,
        "concurrency": concurrency,
        "flood_wall_s": round(wall, 3),
        "flood_codes": dict(Counter(str(c) for c, _ in flood_results)),
        "flood_latency_s": [round(t, 4) for _, t in flood_results],
        "honest_latency_s": [round(t, 4) for t in honest],
        "honest_codes": dict(Counter(str(c) for c in honest_codes)),
        "api_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 3),
        "hashes": dict(hashes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from bench.stack import create_database
    from heldar.store.database import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="heldar-bench-sec-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        server_url = pg.start()
        try:
            results = []
            for name, throttled in (("baseline_unthrottled", False), ("heldar", True)):
                db = f"bench_{name}"

                url = asyncio.run(create_database(server_url, db))
                print(f"running {name} …", file=sys.stderr)
                results.append(run_mode(name, url, Path(tmp) / name, args.flood, args.concurrency, throttled))
        finally:
            pg.stop()
    doc = {"benchmark": "login_flood", "results": results}
    text = json.dumps(doc, indent=2)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)
    table = sys.stdout if args.json else sys.stderr
    print(f"{'mode':<22}{'honest p50 s':>13}{'honest max s':>13}{'flood 429':>10}{'hashes':>8}{'API CPU s':>10}",
          file=table)  # fmt: skip
    for r in results:
        lat = r["honest_latency_s"] or [float("nan")]
        print(f"{r['mode']:<22}{statistics.median(lat):>13.3f}{max(lat):>13.3f}{r['flood_codes'].get('429', 0):>10}"
              f"{sum(r['hashes'].values()):>8}{r['api_cpu_s']:>10.2f}", file=table)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
