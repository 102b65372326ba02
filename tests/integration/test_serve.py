"""``heldar serve`` as a user runs it, as real subprocesses on one embedded data directory.

One served process (auth off, one simulated camera on 2 s segments) is reused by the tests below, in order:
it answers /readyz with every check, a second ``heldar serve`` on its data directory and one on its port both
refuse to start with one line, SIGTERM with open SSE streams ends it within 10 s leaving no Ray, PostgreSQL or
ffmpeg process, and a restart on the same data directory records the camera again with the outage as a gap.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from heldar.fakecam import FakeCamSimThread
from tests.integration.heldar_process import HELDAR, HeldarProcess, free_port

pytestmark = pytest.mark.integration

CAMERA = "cam1"
STOP_WITHIN_S = 10.0


def _processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HELDAR_DATA_DIR": str(data_dir),
        "HELDAR_API_PORT": str(port),
        "HELDAR_AUTH_ENABLED": "false",
        "HELDAR_RAY_DASHBOARD": "false",
        "HELDAR_HEALTH_INTERVAL_S": "2",
        **extra,
    }
    for name in ("RAY_ADDRESS", "HELDAR_DATABASE_URL", "HELDAR_RAY_ADDRESS"):
        env.pop(name, None)
    return env


@dataclass
class Served(HeldarProcess):
    """``heldar serve`` on its own embedded data directory."""

    data_dir: Path = Path()


def served_process(data_dir: Path, port: int, log_path: Path, **extra: str) -> Served:
    return Served("serve", port, _env(data_dir, port, **extra), log_path, data_dir=data_dir)


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a CLI; on timeout kill it and everything it started (a runaway serve must not outlive the test)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{args[-1]} did not exit within {timeout:.0f}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _wait_for(predicate: Any, timeout: float, what: str, log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{log()}" if log else ""))


@pytest.fixture(scope="module")
def sim() -> Iterator[FakeCamSimThread]:
    with FakeCamSimThread(port=0, control_port=0) as s:
        s.add_camera(CAMERA)
        yield s


@pytest.fixture(scope="module")
def served(sim: FakeCamSimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The first run: ready, with the simulated camera registered and recording."""
    tmp = tmp_path_factory.mktemp("serve")
    served = served_process(tmp / "data", free_port(), tmp / "serve.log")
    served.start()
    try:
        served.wait_ready()
        body = {"id": CAMERA, "name": "Cam 1", "main_stream_url": sim.url(CAMERA), "segment_seconds": 2}
        r = httpx.post(f"{served.base}/api/v1/cameras", json=body, timeout=10)
        assert r.status_code == 201, r.text
        _wait_for(lambda: served.segments_after(CAMERA, served.started_at), 90, "a first segment", served.log)  # type: ignore[arg-type]
        yield served
    finally:
        served.kill(children=True)


def test_readyz_says_what_it_checked(served: Served) -> None:
    r = httpx.get(f"{served.base}/readyz", timeout=5)
    body = r.json()
    assert r.status_code == 200, body
    assert body["ready"] is True
    assert body["checks"]["database"] is True and body["checks"]["supervisor"] is True, body
    assert body["supervisor"]["reachable"] is True, body
    assert body["required_pct"] == 0


def test_banner_and_progress_lines(served: Served) -> None:
    _wait_for(lambda: f"{served.base}/docs" in served.log(), 10, "the banner", served.log)
    log = served.log()
    for line in ("starting local Ray", "starting the supervisor", "heldar ready"):
        assert line in log, log
    assert log.index("starting local Ray") < log.index("starting the supervisor") < log.index("heldar ready")


def test_second_serve_on_the_same_data_dir_refuses(served: Served) -> None:
    t0 = time.monotonic()
    result = _run([*HELDAR, "serve"], _env(served.data_dir, free_port()))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(served.data_dir) in lines[0] and "in use" in lines[0], lines
    assert str(served.proc.pid) in lines[0], lines  # type: ignore[union-attr]
    assert time.monotonic() - t0 < 20
    # the running one is untouched: its database still answers
    assert httpx.get(f"{served.base}/readyz", timeout=5).status_code == 200


def test_port_in_use_is_refused_before_anything_starts(served: Served, tmp_path: Path) -> None:
    other = tmp_path / "other"
    result = _run([*HELDAR, "serve"], _env(other, served.port))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(served.port) in lines[0] and "HELDAR_API_PORT" in lines[0], lines
    assert not (other / "pg").exists(), "the database was started before the port check"
    assert "Ray" not in result.stderr


def _open_stream(url: str, lines: list[str], opened: threading.Event) -> None:
    try:
        headers, timeout = {"Accept": "text/event-stream"}, httpx.Timeout(5, read=None)
        with httpx.stream("GET", url, headers=headers, timeout=timeout) as r:
            opened.set()
            for line in r.iter_lines():
                lines.append(line)
    except httpx.HTTPError as exc:
        lines.append(f"!error {exc.__class__.__name__}")
    finally:
        opened.set()


def test_sigterm_with_open_sse_streams_stops_within_10s_leaving_nothing(served: Served) -> None:
    assert served.proc is not None
    streams = []
    for _ in range(2):
        lines: list[str] = []
        opened = threading.Event()
        thread = threading.Thread(
            target=_open_stream, args=(f"{served.base}/api/v1/events/stream", lines, opened), daemon=True
        )
        thread.start()
        assert opened.wait(10)
        streams.append((thread, lines))
    _wait_for(lambda: all(any("ready" in x for x in lines) for _, lines in streams), 10, "the streams' ready event")
    children = psutil.Process(served.proc.pid).children(recursive=True)
    assert children, "serve should have started Ray processes"
    postgres = _processes_mentioning(str(served.data_dir / "pg"))
    assert postgres, "embedded PostgreSQL should be running"
    ffmpeg = _processes_mentioning(str(served.data_dir / "recordings"))
    assert ffmpeg, "the camera's ffmpeg should be running"

    t0 = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    try:
        rc = served.proc.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"heldar serve still running {STOP_WITHIN_S:.0f}s after SIGTERM:\n{served.log()}")
    assert rc == 0, served.log()
    print(f"heldar serve exited {time.monotonic() - t0:.1f}s after SIGTERM with 2 event streams open")
    left_s = max(0.5, STOP_WITHIN_S - (time.monotonic() - t0))
    _, alive = psutil.wait_procs(children + postgres + ffmpeg, timeout=left_s)
    assert not alive, [(p.pid, p.name()) for p in alive]
    assert not _processes_mentioning(str(served.data_dir))
    assert "heldar stopped" in served.log()
    for thread, lines in streams:
        thread.join(5)
        assert not thread.is_alive(), "an SSE client was left hanging"
        assert "event: end" in lines, lines


def test_restart_on_the_same_data_dir_records_again_and_the_outage_is_a_gap(served: Served) -> None:
    assert served.proc is not None
    if served.proc.poll() is None:  # run on its own, without the SIGTERM test before it
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0, served.log()
    stopped_at = datetime.now(UTC)
    served.start()
    assert served.started_at is not None
    served.wait_ready()
    fresh = _wait_for(
        lambda: served.segments_after(CAMERA, served.started_at), 90, "a segment after the restart", served.log
    )  # type: ignore[arg-type]
    assert fresh
    assert served.get(f"/api/v1/cameras/{CAMERA}/health")["state"] == "recording"

    def outage_gap() -> dict[str, Any] | None:
        for gap in served.get(f"/api/v1/cameras/{CAMERA}/recording-gaps"):
            start, end = datetime.fromisoformat(gap["gap_start"]), datetime.fromisoformat(gap["gap_end"])
            if start <= stopped_at + timedelta(seconds=2) and end >= served.started_at:  # type: ignore[operator]
                return dict(gap)
        return None

    gap = _wait_for(outage_gap, 30, "a recording gap spanning the restart", served.log)
    assert (gap["cause"] or "").split(":")[0] == "heldar_stopped", gap  # a clean stop, said so
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0, served.log()


def test_bad_setting_stops_startup_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "HELDAR_DATA_DIR": str(tmp_path), "HELDAR_API_PORT": "eighty"}
    result = _run([*HELDAR, "serve"], env)
    assert result.returncode == 2
    assert "HELDAR_API_PORT" in result.stderr and "eighty" in result.stderr
