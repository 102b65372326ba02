"""The operator side of the ``heldar`` command (issue 16): the env file, typos in HELDAR_* names, the effective
configuration with secrets masked, the shipped example env file, one-line errors for ``heldar api`` and
``heldar worker``, descriptions and examples on every subcommand. Run as subprocesses, as an operator would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from heldar.cli import (
    EnvFileError,
    apply_env_file,
    example_env_lines,
    mask_url,
    parse_env_file,
    unknown_variables,
)
from tests.unit.test_cli import _heldar, _one_line

HELDAR = [sys.executable, "-m", "api.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELDAR_", "RAY_ADDRESS"))}
    env.update({"HELDAR_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), **extra})
    return env


# --- the env file -------------------------------------------------------------------------------------------


def test_env_file_syntax() -> None:
    text = "# comment\n\nHELDAR_API_PORT=8001\nexport HELDAR_LOG_LEVEL = debug\nHELDAR_X='a b'\nHELDAR_Y=\"#1\"\n"
    assert parse_env_file(text) == {"HELDAR_API_PORT": "8001", "HELDAR_LOG_LEVEL": "debug", "HELDAR_X": "a b",
                                    "HELDAR_Y": "#1"}  # fmt: skip
    with pytest.raises(EnvFileError, match="line 2: expected NAME=VALUE"):
        parse_env_file("A=1\nnot a setting\n", "f")


def test_the_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    file = tmp_path / "heldar.env"
    file.write_text("HELDAR_API_PORT=8001\nHELDAR_LOG_LEVEL=DEBUG\n")
    environ = {"HELDAR_API_PORT": "9000"}
    assert apply_env_file(file, environ) == {"HELDAR_LOG_LEVEL": "DEBUG"}
    assert environ == {"HELDAR_API_PORT": "9000", "HELDAR_LOG_LEVEL": "DEBUG"}
    environ = {"HELDAR_ENV_FILE": str(file)}  # the variable names the file when --env-file is not given
    assert apply_env_file(None, environ)["HELDAR_API_PORT"] == "8001"


@pytest.mark.parametrize("where", ["before", "after", "variable"])
def test_an_env_file_is_read(tmp_path: Path, where: str) -> None:
    file = tmp_path / "prod.env"
    file.write_text("HELDAR_API_PORT=8123\nHELDAR_DATABASE_URL=postgresql://heldar:hunter22@db:5432/heldar\n")
    args = {"before": ["--env-file", str(file), "config", "--effective"],
            "after": ["config", "--effective", "--env-file", str(file)],
            "variable": ["config", "--effective"]}[where]  # fmt: skip
    env = _env(tmp_path, **({"HELDAR_ENV_FILE": str(file)} if where == "variable" else {}))
    result = _heldar(*args, env=env)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["HELDAR_API_PORT"] == ["8123", "env", "file"]
    assert rows["HELDAR_DATABASE_URL"] == ["postgresql://heldar:********@db:5432/heldar", "env", "file"]
    assert rows["HELDAR_LOG_LEVEL"] == ["INFO", "default"]
    assert "hunter22" not in result.stdout + result.stderr


def test_a_missing_env_file_is_one_line(tmp_path: Path) -> None:
    result = _heldar("--env-file", str(tmp_path / "nope.env"), "serve", env=_env(tmp_path))
    assert result.returncode == 2
    assert _one_line(result.stderr) == f"heldar: env file {tmp_path / 'nope.env'} does not exist; check --env-file " \
        "or HELDAR_ENV_FILE"  # fmt: skip


def test_a_bad_env_file_line_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.env"
    file.write_text("HELDAR_API_PORT=1\nHELDAR API PORT 2\n")
    result = _heldar("--env-file", str(file), "config", env=_env(tmp_path))
    assert result.returncode == 2
    assert "line 2: expected NAME=VALUE" in _one_line(result.stderr)


# --- HELDAR_* typos -----------------------------------------------------------------------------------------


def test_a_typo_is_warned_about_with_the_closest_name() -> None:
    found = unknown_variables({"HELDAR_LOG_LEVL": "DEBUG", "HELDAR_API_PORT": "1", "HELDAR_ZZZZZZZZZ": "1",
                               "HELDAR_ENV_FILE": "x", "HELDAR_API_KEY": "k", "PATH": "/bin"})  # fmt: skip
    assert found == [("HELDAR_LOG_LEVL", "HELDAR_LOG_LEVEL"), ("HELDAR_ZZZZZZZZZ", None)]


def test_serve_warns_at_start_about_a_typo(tmp_path: Path) -> None:
    """The warning comes before anything else; here the bad port then stops the start (nothing started)."""
    result = _heldar("serve", env=_env(tmp_path, HELDAR_RETENTION_HOURS="48", HELDAR_API_PORT="-1"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2, result.stderr
    assert lines[0] == ("heldar: warning: HELDAR_RETENTION_HOURS is not a heldar setting and does nothing; "
                        "did you mean HELDAR_DEFAULT_RETENTION_HOURS?")  # fmt: skip
    assert lines[1].startswith("heldar: invalid configuration: HELDAR_API_PORT")


def test_config_effective_warns_about_a_typo(tmp_path: Path) -> None:
    result = _heldar("config", "--effective", env=_env(tmp_path, HELDAR_AUTH_ENABLD="false"))
    assert result.returncode == 0
    assert _one_line(result.stderr) == (
        "heldar: warning: HELDAR_AUTH_ENABLD is not a heldar setting and does nothing; "
        "did you mean HELDAR_AUTH_ENABLED?"
    )


# --- heldar config --effective and the example env file ------------------------------------------------------


def test_effective_config_masks_every_secret(tmp_path: Path) -> None:
    env = _env(tmp_path, HELDAR_BOOTSTRAP_ADMIN_PASSWORD="s3cret-admin", HELDAR_FRAME_TICKET_SECRET="tick-tock-key",
               HELDAR_DATABASE_URL="postgresql://u:pw-in-url@[::1]:5433/db?sslmode=require")  # fmt: skip
    result = _heldar("config", "--effective", env=env)
    assert result.returncode == 0, result.stderr
    for secret in ("s3cret-admin", "tick-tock-key", "pw-in-url"):
        assert secret not in result.stdout
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["HELDAR_BOOTSTRAP_ADMIN_PASSWORD"] == ["********", "env"]
    assert rows["HELDAR_DATABASE_URL"][0] == "postgresql://u:********@[::1]:5433/db?sslmode=require"


def test_mask_url_keeps_what_is_not_secret() -> None:
    assert mask_url("postgresql://heldar@db/heldar") == "postgresql://heldar@db/heldar"
    assert mask_url("mqtt://ha:pw@broker:1883") == "mqtt://ha:********@broker:1883"


def test_the_shipped_example_env_file_is_current_and_covers_every_setting() -> None:
    from config.settings import describe_settings

    shipped = (ROOT / "config" / "heldar.example.env").read_text(encoding="utf-8").splitlines()
    assert shipped == example_env_lines(describe_settings()), (
        "config/heldar.example.env is stale: regenerate with `heldar config --example > config/heldar.example.env`"
    )
    named = {line[1:].split("=", 1)[0] for line in shipped if line.startswith("#HELDAR_")}
    assert named == {name for name, _, _ in describe_settings()}
    parse_env_file("\n".join(line[1:] for line in shipped if line.startswith("#HELDAR_")))  # valid once uncommented


def test_the_example_env_file_uncommented_loads(tmp_path: Path) -> None:
    """Every default in the file is a valid value (an operator who uncomments a line gets what it says)."""
    shipped = (ROOT / "config" / "heldar.example.env").read_text(encoding="utf-8").splitlines()
    file = tmp_path / "all.env"
    file.write_text("\n".join(line[1:] for line in shipped if line.startswith("#HELDAR_")))
    result = _heldar("--env-file", str(file), "config", "--effective", env=_env(tmp_path))
    assert result.returncode == 0 and result.stderr == "", result.stderr


# --- every subcommand is described; heldar api and worker errors are one line ----------------------------------


@pytest.mark.parametrize("command", ["serve", "api", "demo", "migrate", "config", "fakecam", "worker"])
def test_every_subcommand_has_a_description_and_examples(tmp_path: Path, command: str) -> None:
    result = _heldar(command, "--help", env=_env(tmp_path))
    assert result.returncode == 0
    head = result.stdout.split("\n\n", 2)
    assert len(head) >= 2 and len(head[1].strip()) > 30, result.stdout  # a description paragraph
    assert "example" in result.stdout and f"heldar {command}" in result.stdout


def test_heldar_api_without_a_database_url_is_one_line(tmp_path: Path) -> None:
    result = _heldar("api", env=_env(tmp_path, HELDAR_RAY_ADDRESS="127.0.0.1:1"))
    assert result.returncode == 1
    assert _one_line(result.stderr) == (
        "heldar: heldar api joins a running cluster and needs HELDAR_DATABASE_URL (e.g. "
        "HELDAR_DATABASE_URL=postgresql://heldar@db/heldar); for everything in one process use heldar serve"
    )


def test_heldar_api_with_an_unreachable_ray_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, HELDAR_RAY_ADDRESS="127.0.0.1:1", HELDAR_DATABASE_URL="postgresql://h@127.0.0.1:1/h",
               HELDAR_API_PORT="0")  # fmt: skip
    result = _heldar("api", env=env)
    assert result.returncode == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in _one_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "api:8000"], "heldar: --url 'api:8000' is not an http(s) URL; e.g. --url http://127.0.0.1:8000"),
        (["--url", "http://x", "--log-level", "LOUD"], "heldar: --log-level 'LOUD' is not one of DEBUG, INFO"),
        (["--url", "http://x", "--analyzers", "bad"], "heldar: --analyzers: analyzer spec 'bad' is not name="),
        (["--url", "http://x", "--analyzers", "a=no_such_mod_x:f"], "heldar: --analyzers: No module named"),
    ],
)
def test_worker_operator_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = _heldar("worker", *args, env=_env(tmp_path))
    assert result.returncode == 1
    assert _one_line(result.stderr).startswith(message)


def test_a_fakecam_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _heldar("fakecam", "--port", str(port), "--control-port", "0", env=_env(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]  # after the simulator's own "starting encoder" log line
    assert f"('127.0.0.1', {port})" in line and "address already in use" in line and "pick a free port" in line


def test_every_heldar_variable_the_code_reads_is_known() -> None:
    """A variable read with os.environ somewhere (tests and tools included) must not be warned about as a typo."""
    import re

    from heldar.cli import known_variables

    pattern = re.compile(r"""environ(?:\.get\(|\[|\.setdefault\()\s*["'](HELDAR_[A-Z0-9_]+)["']""")
    read = set()
    for path in ROOT.rglob("*.py"):
        if ".venv" not in path.parts:
            read |= set(pattern.findall(path.read_text(encoding="utf-8", errors="replace")))
    assert read and not read - known_variables(), sorted(read - known_variables())
