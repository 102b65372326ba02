from __future__ import annotations

import pytest

from config import Settings, SettingsError, load_settings
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


# --- upstream spellings -----------------------------------------------------------------------------------


def test_upstream_spellings_are_read_and_ours_wins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from config.settings import UPSTREAM_ALIASES

    upstream = {"HELDAR_FRAME_TICKET_TTL_SECS": "300", "HELDAR_DEFAULT_AI_FPS": "2.5", "HELDAR_DEFAULT_AI_WIDTH": "640",
                "HELDAR_AUDIT_RETENTION_DAYS": "90", "HELDAR_MEDIA_JOB_CONCURRENCY": "7",
                "HELDAR_NOTIFIER_INTERVAL_S": "15"}  # fmt: skip
    assert set(upstream) == set(UPSTREAM_ALIASES.values())
    for name, value in upstream.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.frame_ticket_ttl_s, s.ai_default_fps, s.ai_default_width) == (300, 2.5, 640)
    assert (s.event_retention_days, s.media_job_slots, s.webhook_interval_s) == (90, 7, 15)
    monkeypatch.setenv("HELDAR_AI_DEFAULT_FPS", "4")  # both set: ours wins
    monkeypatch.setenv("HELDAR_FRAME_TICKET_TTL_S", "")  # empty counts as unset: the alias stands
    s = load_settings()
    assert s.ai_default_fps == 4 and s.frame_ticket_ttl_s == 300
    # actors rebuild the settings from model_dump() by field name; a keyword beats the environment
    assert Settings(**s.model_dump()).ai_default_width == 640
    assert Settings(ai_default_width=320).ai_default_width == 320


def test_a_bad_value_under_the_upstream_name_names_that_variable(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HELDAR_DEFAULT_AI_WIDTH", "99999")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith("invalid configuration: HELDAR_DEFAULT_AI_WIDTH: ")
    monkeypatch.setenv("HELDAR_AI_DEFAULT_WIDTH", "1")  # ours set too: ours is the one read, and named
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith("invalid configuration: HELDAR_AI_DEFAULT_WIDTH: ")


def test_upstream_spellings_are_no_unknown_variables() -> None:
    from config.settings import UPSTREAM_ALIASES
    from heldar.cli import unknown_variables

    environ = {name: "1" for name in UPSTREAM_ALIASES.values()} | {"HELDAR_DEFAULT_AI_FSP": "1"}
    assert unknown_variables(environ) == [("HELDAR_DEFAULT_AI_FSP", "HELDAR_DEFAULT_AI_FPS")]


def test_an_upstream_name_in_another_unit_is_warned_about_with_ours() -> None:
    import io

    from heldar.cli import warn_unknown_variables

    out = io.StringIO()
    assert warn_unknown_variables({"HELDAR_PLAYBACK_SESSION_TTL_MINUTES": "60", "HELDAR_FRAME_TICKET_TTL_SECS": "1"},
                                  out) == 1  # fmt: skip
    assert out.getvalue() == (
        "heldar: warning: HELDAR_PLAYBACK_SESSION_TTL_MINUTES is not a heldar setting and does nothing; "
        "it is upstream's name, here use HELDAR_PLAYBACK_TTL_S (in seconds)\n"
    )


def test_effective_config_says_a_value_came_under_the_upstream_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from heldar.cli import effective_rows

    environ = {"HELDAR_DEFAULT_AI_FPS": "3"}
    rows = {name: (value, source) for name, value, source in
            effective_rows(Settings(data_dir=tmp_path, ai_default_fps=3), {}, environ)}  # fmt: skip
    assert rows["HELDAR_AI_DEFAULT_FPS"] == ("3.0", "env (HELDAR_DEFAULT_AI_FPS)")
    assert rows["HELDAR_AI_DEFAULT_WIDTH"] == ("1280", "default")


def test_readme_rows_name_the_upstream_aliases() -> None:
    from pathlib import Path

    from config.settings import UPSTREAM_ALIASES, env_name

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `HELDAR_")}
    for field, alias in UPSTREAM_ALIASES.items():
        assert f"`{alias}`" in rows[f"`{env_name(field)}`"], f"README's {env_name(field)} row does not name {alias}"
