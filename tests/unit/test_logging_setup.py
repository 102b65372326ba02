"""The one logging set-up (``heldar/logging_setup.py``): text and JSON lines, the camera id as a field, one
handler however often it is called, and every actor configures logging through it (no ``basicConfig``)."""

from __future__ import annotations

import ast
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from heldar import logging_setup
from heldar.logging_setup import log_context, setup_actor_logging, setup_logging

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging_setup._HeldarHandler)]:
        root.removeHandler(handler)
    logging_setup._process_fields.clear()
    root.setLevel(logging.WARNING)


def test_json_lines_carry_the_camera_and_extra_fields(stream: io.StringIO) -> None:
    setup_logging("INFO", "json", camera_id="cam-7", stream=stream)
    log = logging.getLogger("heldar.test")
    log.info("segment %s indexed", "a.mp4", extra={"segment": "a.mp4"})
    log.debug("not shown at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["msg"] == "segment a.mp4 indexed" and first["level"] == "INFO" and first["logger"] == "heldar.test"
    assert first["camera_id"] == "cam-7" and first["segment"] == "a.mp4"
    assert first["ts"].endswith("+00:00")
    assert lines[1]["exc"].startswith("Traceback") and "ValueError: boom" in lines[1]["exc"]


def test_text_lines_name_the_camera(stream: io.StringIO) -> None:
    setup_logging("INFO", "text", stream=stream)
    log = logging.getLogger("heldar.test")
    with log_context(camera_id="door"):
        log.warning("stalled")
    log.warning("no camera")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING heldar.test: stalled [camera=door]")
    assert second.endswith("WARNING heldar.test: no camera")


def test_setting_up_twice_keeps_one_handler(stream: io.StringIO) -> None:
    setup_logging("INFO", "text", stream=stream)
    setup_logging("INFO", "json", stream=stream)
    logging.getLogger("heldar.test").warning("once")
    assert len(stream.getvalue().splitlines()) == 1
    assert json.loads(stream.getvalue())["msg"] == "once"


def test_access_log_lines_have_request_fields(stream: io.StringIO) -> None:
    setup_logging("INFO", "json", access_log=True, stream=stream)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/readyz", "1.1", 200)
    line = json.loads(stream.getvalue())
    assert line["method"] == "GET" and line["path"] == "/readyz" and line["status"] == 200
    stream.truncate(0)
    stream.seek(0)
    setup_logging("INFO", "json", access_log=False, stream=stream)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/", "1.1", 200)
    assert stream.getvalue() == ""


def test_actor_settings_give_level_and_format(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", stream)
    setup_actor_logging({"log_level": "WARNING", "log_format": "json"}, camera_id="c1")
    logging.getLogger("heldar.x").info("hidden")
    logging.getLogger("heldar.x").warning("shown")
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["shown"]
    monkeypatch.setenv("HELDAR_LOG_FORMAT", "json")  # a camera actor, given only its level
    setup_actor_logging(level="INFO", camera_id="c2")
    logging.getLogger("heldar.x").info("from env")
    assert json.loads(stream.getvalue().splitlines()[-1])["camera_id"] == "c2"


def _init_calls(path: Path) -> list[str]:
    """Names called in the ``__init__`` of each ray actor class in ``path``."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            for call in ast.walk(node):
                if isinstance(call, ast.Call):
                    func = call.func
                    calls.append(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return calls


@pytest.mark.parametrize("name", ["camera", "detector", "ingest", "sampler", "supervisor", "writer"])
def test_every_actor_logs_through_the_one_set_up(name: str) -> None:
    path = ROOT / "actors" / f"{name}.py"
    assert "basicConfig" not in path.read_text(encoding="utf-8")
    assert "setup_actor_logging" in _init_calls(path)


def test_uvicorns_own_log_config_from_an_earlier_server_does_not_bypass_the_set_up() -> None:
    import io
    import logging.config

    from uvicorn.config import LOGGING_CONFIG

    from heldar.logging_setup import setup_logging

    logging.config.dictConfig(LOGGING_CONFIG)  # what a uvicorn run with default settings leaves behind
    stream = io.StringIO()
    setup_logging("INFO", "json", access_log=True, stream=stream)
    try:
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/healthz", "1.1", 200
        )
    finally:
        setup_logging("WARNING", "text")
    assert '"path": "/healthz"' in stream.getvalue() or '"path":"/healthz"' in stream.getvalue(), stream.getvalue()
