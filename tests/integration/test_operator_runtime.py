"""The operator side at run time, with real parts: ``heldar migrate`` logging JSON lines, a Ray actor logging
JSON with its camera id as a field, and ``heldar worker`` against a real API (uvicorn, auth on, PostgreSQL):
a refused key ends it with one line instead of retrying for ever, a good key from ``HELDAR_API_KEY`` works
and logs a summary line per interval, ``--api-key`` in argv warns."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import uvicorn

from api.app import create_app
from api.auth_wiring import bootstrap_admin
from heldar.logging_setup import setup_actor_logging
from tests.integration.test_auth_api import ADMIN_PASSWORD, ADMIN_USER, settings_for

pytestmark = pytest.mark.integration

HELDAR = [sys.executable, "-m", "api.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELDAR_", "RAY_ADDRESS"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_migrate_logs_json_lines(new_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env(HELDAR_DATABASE_URL=new_database(migrated=False), HELDAR_LOG_FORMAT="json",
               HELDAR_DATA_DIR=str(tmp_path))  # fmt: skip
    result = subprocess.run([*HELDAR, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(line["msg"].startswith("applied migration 0001") for line in lines), lines
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)


@ray.remote(num_cpus=0)
class _LoggingActor:
    """Configures logging as every heldar actor's constructor does, then logs one line."""

    def __init__(self, settings: dict[str, Any], camera_id: str) -> None:
        setup_actor_logging(settings, camera_id=camera_id)

    def log(self) -> int:
        logging.getLogger("heldar.recording").warning("segment %s indexed", "x.mp4", extra={"segment": "x.mp4"})
        for handler in logging.getLogger().handlers:
            handler.flush()
        return os.getpid()


def test_an_actor_logs_json_with_its_camera_as_a_field(ray_session: str) -> None:
    actor = _LoggingActor.options(namespace=ray_session).remote({"log_level": "INFO", "log_format": "json"}, "cam-j")  # type: ignore[attr-defined]
    try:
        pid = ray.get(actor.log.remote(), timeout=60)
        logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())

        def found() -> list[dict[str, Any]]:
            rows = []
            for path in logs.glob(f"worker-*-{pid}.err"):
                for line in path.read_text(errors="replace").splitlines():
                    if line.startswith("{") and "segment x.mp4 indexed" in line:
                        rows.append(json.loads(line))
            return rows

        deadline = time.monotonic() + 20
        while not found() and time.monotonic() < deadline:
            time.sleep(0.5)
        rows = found()
        assert rows, f"no JSON line in {sorted(p.name for p in logs.glob(f'worker-*-{pid}.*'))}"
        assert rows[0]["camera_id"] == "cam-j" and rows[0]["segment"] == "x.mp4" and rows[0]["level"] == "WARNING"
    finally:
        ray.kill(actor)


# --- heldar worker against a real API -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(new_database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    url = new_database()
    settings = settings_for(tmp_path_factory.mktemp("worker-api"))
    asyncio.run(bootstrap_admin(settings, url))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, url), host="127.0.0.1", port=port,
                                           log_config=None, lifespan="on"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    with httpx.Client(base_url=base, timeout=10) as client:
        token = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}).json()
        r = client.post("/api/v1/api-keys", json={"name": "w", "role": "integration"},
                        headers={"Authorization": f"Bearer {token['token']}"})  # fmt: skip
        assert r.status_code == 201, r.text
        yield {"base": base, "key": r.json()["key"]}
    server.should_exit = True
    thread.join(20)


def _worker(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HELDAR, "worker", *args], env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_a_refused_key_ends_the_worker_with_one_line(api: dict[str, str]) -> None:
    started = time.monotonic()
    result = _worker("--url", api["base"], HELDAR_API_KEY="vok_not-a-real-key")
    assert time.monotonic() - started < 30  # no retrying for ever (nor for long)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.endswith(f"working for {api['base']}")]
    assert lines == [
        f"heldar: the API at {api['base']} refused the worker's key (401 unauthorized): it is wrong, expired or "
        "revoked; set HELDAR_API_KEY to a valid integration key"
    ], result.stderr
    assert "vok_not-a-real-key" not in result.stderr


def test_a_good_key_from_the_environment_works_and_logs_summaries(api: dict[str, str]) -> None:
    result = _worker("--url", api["base"], "--seconds", "3.5", "--summary-every", "1", HELDAR_API_KEY=api["key"])
    assert result.returncode == 0, result.stderr
    summaries = [line for line in result.stderr.splitlines() if ": 0 task(s) leased; last 1 s: " in line]
    assert len(summaries) >= 3, result.stderr  # one a second, and a last one on the way out
    assert "warning" not in result.stderr.lower() and api["key"] not in result.stderr


def test_a_key_in_argv_works_but_warns(api: dict[str, str]) -> None:
    result = _worker("--url", api["base"], "--seconds", "1", "--api-key", api["key"])
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "heldar: warning: --api-key puts the key in the process list, where other users of this machine can read "
        "it; set HELDAR_API_KEY instead"
    )


@pytest.mark.parametrize("access_log", [True, False])
def test_the_access_log_goes_through_the_one_set_up(new_database, tmp_path: Path, access_log: bool) -> None:  # type: ignore[no-untyped-def]
    """The server heldar serve / heldar api run (``uvicorn_config``) with HELDAR_ACCESS_LOG and json lines."""
    import io

    from api.server import uvicorn_config
    from heldar.logging_setup import setup_logging

    settings = settings_for(tmp_path, api_port=_free_port(), access_log=access_log, log_format="json")
    url = new_database()
    stream = io.StringIO()
    setup_logging("INFO", "json", access_log=settings.access_log, stream=stream)
    server = uvicorn.Server(uvicorn_config(settings, create_app(settings, url)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{settings.api_port}/healthz", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(20)
        setup_logging("WARNING", "text")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    if access_log:
        assert [(a["method"], a["path"], a["status"]) for a in access] == [("GET", "/healthz", 200)], lines
    else:
        assert access == [], access
    assert not [line for line in lines if line["logger"] == "uvicorn.error" and line["level"] == "INFO"]
