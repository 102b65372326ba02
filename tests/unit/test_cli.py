"""The ``heldar`` command as an operator meets it, run as a subprocess: operator errors are one line on stderr
with the fix and a non-zero exit, never a traceback; nothing is started before the checks pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from heldar import __version__
from heldar.store.database import DataDirLock

HELDAR = [sys.executable, "-m", "api.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HELDAR_DATA_DIR": str(tmp_path / "data"), **extra}
    for name in ("HELDAR_DATABASE_URL", "HELDAR_RAY_ADDRESS", "RAY_ADDRESS"):
        if name not in extra:
            env.pop(name, None)
    return env


def _heldar(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HELDAR, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_version(tmp_path: Path) -> None:
    result = _heldar("--version", env=_env(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == f"heldar {__version__}"


def test_python_dash_m_api_is_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api", "--version"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == f"heldar {__version__}"


def test_subcommands_are_described(tmp_path: Path) -> None:
    top = _heldar("--help", env=_env(tmp_path)).stdout
    for name in ("serve", "demo", "migrate", "config", "fakecam", "worker"):
        assert name in top
    serve = _heldar("serve", "--help", env=_env(tmp_path)).stdout
    assert "HELDAR_" in serve and "heldar config" in serve and "examples:" in serve


def test_config_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """``heldar config | head -1``: the reader leaves early; no BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [*HELDAR, "config"], env=_env(tmp_path), stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141


def test_config_columns_line_up(tmp_path: Path) -> None:
    lines = _heldar("config", env=_env(tmp_path)).stdout.splitlines()
    consumers = next(line for line in lines if line.startswith("HELDAR_DETECTION_CONSUMERS "))
    assert "heldar.zones.engine:zone_consumer  Detection consumers" in consumers


def test_bad_log_level_is_one_line_naming_the_choices(tmp_path: Path) -> None:
    result = _heldar("serve", env=_env(tmp_path, HELDAR_LOG_LEVEL="LOUD"))
    line = _one_line(result.stderr)
    assert result.returncode == 2
    assert "HELDAR_LOG_LEVEL" in line and "'INFO'" in line and "LOUD" in line
    assert not (tmp_path / "data" / "pg").exists()


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_unreachable_database_is_one_line_with_the_fix(tmp_path: Path, command: str) -> None:
    env = _env(tmp_path, HELDAR_DATABASE_URL="postgresql://heldar:s3cret-pw@127.0.0.1:1/heldar", HELDAR_API_PORT="0")
    result = _heldar(command, env=env)
    line = _one_line(result.stderr)
    assert result.returncode == 1
    assert line == (
        "heldar: cannot reach the database at 127.0.0.1:1 (connection refused); is PostgreSQL running? "
        "check HELDAR_DATABASE_URL"
    )
    assert "s3cret-pw" not in result.stderr + result.stdout


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_locked_data_dir_is_refused(tmp_path: Path, command: str) -> None:
    with DataDirLock(tmp_path / "data"):
        result = _heldar(command, env=_env(tmp_path, HELDAR_API_PORT="0"))
    line = _one_line(result.stderr)
    assert result.returncode == 1
    assert f"data directory {tmp_path / 'data'} is in use by another heldar (pid {os.getpid()})" in line
    assert "HELDAR_DATA_DIR" in line
    assert not (tmp_path / "data" / "pg").exists()


def test_unreachable_ray_address_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """``ray.init`` retries an address nobody answers on for ever; the check before start-up does not."""
    result = _heldar("serve", env=_env(tmp_path, HELDAR_RAY_ADDRESS="127.0.0.1:1", HELDAR_API_PORT="0"), timeout=30)
    line = _one_line(result.stderr)
    assert result.returncode == 1
    assert line == (
        "heldar: cannot reach the Ray cluster at 127.0.0.1:1 (connection refused); check HELDAR_RAY_ADDRESS, "
        "or unset it to start a local Ray"
    )
    assert not (tmp_path / "data" / "pg").exists()


def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from config import load_settings

    monkeypatch.setenv("HELDAR_LOG_LEVEL", " debug")
    assert load_settings().log_level == "DEBUG"


def test_preflight_locks_only_an_embedded_data_dir(tmp_path: Path) -> None:
    from api.server import preflight
    from config import load_settings
    from heldar.store.database import DataDirInUse

    embedded = load_settings(data_dir=tmp_path, api_port=0)
    held = preflight(embedded)
    try:
        with pytest.raises(DataDirInUse):
            preflight(embedded)
    finally:
        held.release()
    preflight(embedded).release()  # free again once released
    external = load_settings(data_dir=tmp_path, api_port=0, database_url="postgresql://heldar@db/heldar")
    first, second = preflight(external), preflight(external)  # several serve may share an external database
    assert first.lock is None and second.lock is None


def test_the_old_module_entry_point_says_where_the_command_went(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "heldar.cli", "serve"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "python -m api" in _one_line(result.stderr)
