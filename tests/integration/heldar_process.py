"""A ``heldar serve`` or ``heldar api`` subprocess as the tests drive it: start, wait until ready, read, kill."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

HELDAR = [sys.executable, "-m", "api.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HeldarProcess:
    """``heldar <command>`` listening on ``port``, its output in ``log_path``."""

    command: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        self.started_at = datetime.now(UTC)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([*HELDAR, self.command], env={**self.env, "HELDAR_API_PORT": str(self.port)},
                                         stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def wait_ready(self, timeout: float = 150.0) -> dict[str, Any]:
        """The ``/readyz`` body once it says ready; fails with the log if the process exits or never gets there."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                r = httpx.get(f"{self.base}/readyz", timeout=3)
                if r.status_code == 200 and r.json()["ready"]:
                    return dict(r.json())
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"heldar {self.command} never became ready (rc {self.proc.poll()}):\n{self.log()[-4000:]}")

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.base}{path}", params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def segments_after(self, camera: str, after: datetime, *, key: str = "start_time") -> list[dict[str, Any]]:
        rows = self.get(f"/api/v1/cameras/{camera}/segments", limit=100)
        return [s for s in rows if datetime.fromisoformat(s[key]) > after]

    def kill(self, *, children: bool = False) -> None:
        """SIGKILL (with ``children``, everything it started first: a serve's Ray, PostgreSQL and ffmpeg)."""
        if self.proc is not None and self.proc.poll() is None:
            if children:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
            self.proc.kill()
            self.proc.wait(10)
