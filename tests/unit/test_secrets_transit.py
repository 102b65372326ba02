"""Secrets in transit (security F16, F22): the database URL reaches actors as a reference, no secret setting
is in the values actors get, and an ffmpeg child inherits no HELDAR_* variable."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from heldar.media.recorder_command import recorder_env
from heldar.secrets.transit import DATABASE_URL_ENV, SecretRefError, database_ref, is_ref, resolve

URL = "postgresql://heldar:Db-Pa55-canary@db.example:5432/heldar"


def test_a_url_from_this_process_environment_is_read_from_the_node_environment_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, URL)
    ref = database_ref(URL, tmp_path / ".secrets")
    assert ref.startswith("env:HELDAR_DATABASE_URL|file:") and "canary" not in ref and resolve(ref) == URL
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://this-node/its-own")
    assert resolve(ref) == "postgresql://this-node/its-own"  # a node's own variable wins
    monkeypatch.delenv(DATABASE_URL_ENV)
    assert resolve(ref) == URL  # a node without it falls back to the file
    (tmp_path / ".secrets" / ref.split("file:")[1].rsplit("/", 1)[1]).unlink()
    with pytest.raises(SecretRefError, match="HELDAR_DATABASE_URL is not set on this node") as err:
        resolve(ref)
    assert "canary" not in str(err.value)


def test_any_other_url_travels_as_the_path_of_a_file_only_this_user_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    ref = database_ref(URL, tmp_path / ".secrets")
    assert ref.startswith("file:") and "canary" not in ref and is_ref(ref)
    path = Path(ref[len("file:") :])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert resolve(ref) == URL
    assert database_ref(ref, tmp_path / "elsewhere") == ref  # a reference is passed on as it is
    assert database_ref(URL, tmp_path / ".secrets") == ref  # the same URL, the same file
    path.unlink()
    with pytest.raises(SecretRefError, match="set HELDAR_DATABASE_URL in every node"):
        resolve(ref)
    assert resolve("postgresql://local/x") == "postgresql://local/x"  # a plain URL in this process


def test_the_settings_actors_get_hold_no_secret(tmp_path: Path) -> None:
    secrets = {"database_url": URL, "bootstrap_admin_password": "Admin-canary-pw", "mqtt_url": "mqtt://u:Mq-canary@b",
               "frame_ticket_secret": "ticket-canary-key-0123456789", "secret_key": "k" * 64,
               "secret_key_previous": "p" * 64}  # fmt: skip
    settings = Settings(data_dir=tmp_path, **secrets)
    values = json.dumps(settings.for_actors())
    for value in secrets.values():
        assert value not in values
    assert "canary" not in values and json.loads(values)["rtsp_timeout_s"] == settings.rtsp_timeout_s
    Settings(**settings.for_actors())  # actors rebuild their settings from it


def test_ffmpeg_children_inherit_no_heldar_variable() -> None:
    parent = {"PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "HELDAR_DATABASE_URL": URL, "HELDAR_SECRET_KEY": "k" * 64,
              "AWS_SECRET_ACCESS_KEY": "x", "TZ": "Europe/Berlin"}  # fmt: skip
    env = recorder_env(parent)
    assert env == {"PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "TZ": "UTC"}


class _Recorder:
    """Stands in for Ray's actor class at the boundary this module tests: what ``ensure_*`` hand to Ray."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def options(self, **_: Any) -> _Recorder:
        return self

    def remote(self, *args: Any, **kwargs: Any) -> _Recorder:
        self.sent.append((args, kwargs))
        return self

    def __getattr__(self, name: str) -> _Recorder:  # handle.configure.remote(...), handle.start.remote()
        return self


def test_no_ensure_function_hands_ray_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ray

    import actors.handles as handles
    import actors.ingest as ingest
    import actors.retention as retention
    import actors.writer as writer

    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setattr(ray, "get", lambda *a, **k: None)
    settings = Settings(data_dir=tmp_path, database_url=URL, bootstrap_admin_password="Admin-canary-pw")
    recorder = _Recorder()
    for module, name in ((handles, "Supervisor"), (ingest, "IngestActor"), (retention, "RetentionActor"),
                         (writer, "RecordingWriter")):  # fmt: skip
        monkeypatch.setattr(module, name, recorder)
    handles.ensure_supervisor(settings, URL)
    ingest.ensure_ingest(settings, URL)
    retention.ensure_retention(settings, URL, wait=False)
    writer.ensure_writers(settings, URL, 2, 3)
    sent = repr(recorder.sent)
    assert len(recorder.sent) >= 8 and "canary" not in sent and "file:" in sent
