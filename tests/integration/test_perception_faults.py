"""Perception faults on real parts (simulator with a moving scene, Ray, PostgreSQL), with no supervisor and no
API call to help: a sampler or the ingest actor killed with SIGKILL comes back by itself and detections flow
again; a detector call that hangs is timed out, counted as dropped with cause ``timeout``, the detector
replaced, the camera's perception resumes and a camera on another detector is undisturbed."""

from __future__ import annotations

import os
import signal
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.detector import ensure_detectors
from actors.ingest import ensure_ingest
from actors.sampler import SamplerActor, sampler_name
from config import load_settings
from heldar.fakecam import FakeCamSimThread
from heldar.fakecam.scene import SceneSource
from tests.integration.sql import sql
from tests.integration.test_recording import wait_for

pytestmark = pytest.mark.integration

DETECT_TIMEOUT_S = 3.0


def detector_of(camera: str, workers: int = 2) -> int:
    return zlib.crc32(f"{camera}:main".encode()) % workers


def pick(prefix: str, index: int) -> str:
    """A camera id whose main stream the samplers pin to detector ``index``."""
    return next(f"{prefix}-{n}" for n in range(100) if detector_of(f"{prefix}-{n}") == index)


HANG = pick("hang", 0)
CALM = pick("calm", 1)
KILLED = pick("killed", 1)


@pytest.fixture(scope="module")
def env(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = new_database()
    root = tmp_path_factory.mktemp("perc-faults")
    namespace = f"{ray_session}-perc-faults"
    settings = load_settings(
        ray_namespace=namespace, data_dir=root, rtsp_timeout_s=4, ai_detector_workers=2, ai_detector_gpus=0,
        ai_max_in_flight=1, ai_max_pending=1, ai_detect_timeout_s=DETECT_TIMEOUT_S,
        ai_analyzers="hang=tests.integration.perception_helpers:HangAnalyzer",
    )  # fmt: skip
    values = settings.model_dump(mode="json")
    source = SceneSource(cache_dir=str(tmp_path_factory.mktemp("scene")))
    with FakeCamSimThread(source=source) as sim:
        for cam in (HANG, CALM, KILLED):
            sim.add_camera(cam)
            sql(url, "INSERT INTO cameras (id, name, main_stream_url, record_enabled) VALUES ($1, $1, $2, false)",
                cam, sim.url(cam))  # fmt: skip
        ingest = ensure_ingest(settings, url)
        detectors = ensure_detectors(namespace, 2, values, 0)
        samplers: dict[str, Any] = {}
        yield {"url": url, "sim": sim, "values": values, "ingest": ingest, "detectors": detectors,
               "samplers": samplers, "namespace": namespace, "marker": root / "hang-once"}  # fmt: skip
        for handle in [*samplers.values(), ingest, *detectors]:
            ray.kill(handle, no_restart=True)


def start_sampler(env: dict[str, Any], camera: str, tasks: list[list[str]], fps: float = 4) -> Any:
    """Created, never started by anyone: the constructor starts the decoder."""
    unit = {"camera_id": camera, "profile": "main", "url": env["sim"].url(camera), "fps": fps, "width": 320,
            "tasks": tasks}  # fmt: skip
    handle = SamplerActor.options(  # type: ignore[attr-defined]
        name=sampler_name(camera, "main"), namespace=env["namespace"], lifetime="detached"
    ).remote(unit, env["values"])
    env["samplers"][camera] = handle
    return handle


def ping(handle: Any) -> dict[str, Any] | None:
    try:
        return ray.get(handle.ping.remote(), timeout=5)  # type: ignore[no-any-return]
    except Exception:
        return None


def rows_since(env: dict[str, Any], camera: str, since: datetime) -> int:
    query = "SELECT count(*) AS n FROM detections WHERE camera_id = $1 AND created_at > $2"
    return int(sql(env["url"], query, camera, since)[0]["n"])


def test_sampler_sigkill_comes_back_by_itself(env) -> None:  # type: ignore[no-untyped-def]
    sampler = start_sampler(env, KILLED, [["ai_killed", "motion", "{}"]])
    begin = datetime.now(UTC)
    wait_for(lambda: rows_since(env, KILLED, begin) > 0, 60, "motion detections")
    before = ping(sampler)
    assert before and before["ok"] and before["loops"] == {"reader": True}
    os.kill(before["pid"], signal.SIGKILL)
    killed_at = datetime.now(UTC)
    after = wait_for(lambda: (p := ping(sampler)) and p["pid"] != before["pid"] and p["ok"] and p, 90, "restart")
    assert after["loops"] == {"reader": True}
    wait_for(lambda: ray.get(sampler.stats.remote(), timeout=5)["state"] == "sampling", 90, "sampling again")
    wait_for(lambda: rows_since(env, KILLED, killed_at) > 0, 90, "detections after the restart")


def test_ingest_sigkill_comes_back_by_itself(env) -> None:  # type: ignore[no-untyped-def]
    sampler = env["samplers"].get(KILLED) or start_sampler(env, KILLED, [["ai_killed", "motion", "{}"]])
    wait_for(lambda: rows_since(env, KILLED, datetime.now(UTC).replace(year=2000)) > 0, 60, "detections")
    before = wait_for(lambda: (p := ping(env["ingest"])) and p["ok"] and p, 30, "ingest up")
    assert before["loops"] == {"flush": True, "replay": True, "tick": True, "deliver": True} and before["db_ok"]
    os.kill(before["pid"], signal.SIGKILL)
    killed_at = datetime.now(UTC)
    after = wait_for(lambda: (p := ping(env["ingest"])) and p["pid"] != before["pid"] and p["ok"] and p, 60,
                     "ingest restarted with its loops")  # fmt: skip
    assert after["loops"] == {"flush": True, "replay": True, "tick": True, "deliver": True} and after["db_ok"]
    wait_for(lambda: rows_since(env, KILLED, killed_at) > 0, 60, "detections written after the restart")
    assert ping(sampler)["ok"]  # type: ignore[index]


def test_a_hung_detector_is_timed_out_replaced_and_perception_resumes(env) -> None:  # type: ignore[no-untyped-def]
    assert detector_of(HANG) != detector_of(CALM)
    calm = start_sampler(env, CALM, [["ai_calm", "motion", "{}"]])
    begin = datetime.now(UTC)
    wait_for(lambda: rows_since(env, CALM, begin) > 0, 60, "calm camera detections")
    hung_detector = env["detectors"][detector_of(HANG)]
    pid_before = ping(hung_detector)["pid"]  # type: ignore[index]
    marker: Path = env["marker"]
    hang = start_sampler(env, HANG, [["ai_hang", "hang", f'{{"marker": "{marker}"}}']], fps=2)
    wait_for(marker.exists, 60, "the analyzer to hang")
    hung_at = time.monotonic()
    calm_results = ray.get(calm.stats.remote(), timeout=5)["results"]
    stats = wait_for(lambda: (s := ray.get(hang.stats.remote(), timeout=5))["detector_replacements"] >= 1 and s,
                     DETECT_TIMEOUT_S + 15, "the hung detector replaced")  # fmt: skip
    assert stats["frames_dropped_by_cause"]["timeout"] >= 1
    assert time.monotonic() - hung_at < DETECT_TIMEOUT_S + 10
    wait_for(lambda: (p := ping(hung_detector)) and p["pid"] != pid_before, 60, "a new detector process")
    resumed_at = datetime.now(UTC)
    thing = "SELECT 1 FROM detections WHERE camera_id = $1 AND label = 'thing' AND created_at > $2 LIMIT 1"
    wait_for(lambda: sql(env["url"], thing, HANG, resumed_at), 60, "the hung camera's perception")
    # the camera on the other detector kept being analysed all along
    assert ray.get(calm.stats.remote(), timeout=5)["results"] > calm_results
    assert ray.get(calm.stats.remote(), timeout=5)["detector_replacements"] == 0
    wait_for(lambda: rows_since(env, CALM, resumed_at) > 0, 30, "calm camera still detecting")
