from __future__ import annotations

import pytest

from config import SettingsError, load_settings
from config.settings import describe_settings


def test_defaults_and_derived_dirs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HELDAR_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.recordings_root == tmp_path.resolve() / "recordings"
    assert s.auth_enabled is True and s.api_port == 8000 and s.database_url is None


def test_empty_counts_as_unset_and_booleans(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HELDAR_API_PORT", "")
    monkeypatch.setenv("HELDAR_AUTH_ENABLED", "off")
    monkeypatch.setenv("HELDAR_ANR_ENABLED", "yes")
    s = load_settings()
    assert s.api_port == 8000 and s.auth_enabled is False and s.anr_enabled is True


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("HELDAR_API_PORT", "99999"),
        ("HELDAR_API_PORT", "http"),
        ("HELDAR_DEFAULT_SEGMENT_SECONDS", "1"),
        ("HELDAR_DATABASE_URL", "mysql://x"),
        ("HELDAR_LOG_LEVEL", "LOUD"),
        ("HELDAR_BOOTSTRAP_ADMIN_PASSWORD", "short"),
        ("HELDAR_DB_MAX_CONNECTIONS", "1"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch, var: str, value: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert var in str(err.value)


def test_secret_values_are_not_echoed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HELDAR_BOOTSTRAP_ADMIN_PASSWORD", "tiny")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "tiny" not in str(err.value)


def test_every_setting_is_documented() -> None:
    rows = describe_settings()
    assert all(name.startswith("HELDAR_") and description for name, _, description in rows)


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [name for name, _, _ in describe_settings() if f"`{name}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"
