"""Start and stop a separate multi-node Ray cluster on this machine without touching any other Ray.

``ray stop`` kills every Ray process on the machine (the test session's own cluster included), so the
cluster is found and stopped by its temp dir instead: every head/worker process of it carries that path on its
command line, and the actors' worker processes are their children.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

# Ray notices a dead node after period times threshold (the README's "Node loss" section explains the choice).
RAY_NODE_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5",
                   "RAY_health_check_timeout_ms": "1000"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


class LocalCluster:
    def __init__(self) -> None:
        self.temp = Path("/tmp") / f"heldar-ray-{os.getpid()}-{free_port()}"  # short: socket paths ≤ 107 bytes
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **RAY_NODE_HEALTH, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": os.getcwd()}

    def _start(self, *argv: str) -> None:
        command = [ray_cli(), "start", *argv, "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                   f"--temp-dir={self.temp}"]  # fmt: skip
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=240)
        if done.returncode != 0:  # say why: a loaded machine makes the GCS miss its start-up deadline
            raise RuntimeError(f"ray start {argv[0]} failed ({done.returncode}): {done.stderr[-1500:]}")

    def start_head(self, num_cpus: int = 2) -> None:
        self._start("--head", f"--port={self.port}", f"--num-cpus={num_cpus}", "--include-dashboard=false")

    def add_node(self, num_cpus: int = 1) -> None:
        self._start(f"--address={self.address}", f"--num-cpus={num_cpus}")

    def processes(self) -> list[psutil.Process]:
        mine: dict[int, psutil.Process] = {}
        marker = str(self.temp)
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(marker in part for part in proc.info["cmdline"] or []):
                    mine[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        mine[child.pid] = child
            except psutil.Error:
                continue
        return list(mine.values())

    def stop(self) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        psutil.wait_procs(procs, timeout=10)
        time.sleep(0.5)
        shutil.rmtree(self.temp, ignore_errors=True)
