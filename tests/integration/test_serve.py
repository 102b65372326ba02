"""``heldar serve`` as a user runs it: answers /readyz, exits cleanly on SIGTERM, leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_serve_ready_then_clean_exit_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "HELDAR_DATA_DIR": str(data_dir),
        "HELDAR_API_PORT": str(port),
        "HELDAR_AUTH_ENABLED": "false",
        "HELDAR_RAY_DASHBOARD": "false",
    }
    env.pop("RAY_ADDRESS", None)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "heldar.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if r.status_code == 200 and r.json()["ready"]:
                    ready = True
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready, (tmp_path / "serve.log").read_text()
        # /readyz can answer a moment before the banner is flushed to the log
        banner = f"http://127.0.0.1:{port}/docs"
        deadline = time.monotonic() + 10
        while banner not in (tmp_path / "serve.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert banner in (tmp_path / "serve.log").read_text()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "serve should have started Ray processes"
        postgres = _processes_mentioning(str(data_dir / "pg"))
        assert postgres, "embedded PostgreSQL should be running"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()
        _, alive = psutil.wait_procs(children + postgres, timeout=15)
        assert not alive, [(p.pid, p.name()) for p in alive]
        assert not _processes_mentioning(str(data_dir))
        assert "heldar stopped" in (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_bad_setting_stops_startup_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "HELDAR_DATA_DIR": str(tmp_path), "HELDAR_API_PORT": "eighty"}
    result = subprocess.run(
        [sys.executable, "-m", "heldar.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "HELDAR_API_PORT" in result.stderr and "eighty" in result.stderr
