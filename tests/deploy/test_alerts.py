"""config/alerts.yml: valid rules, a promtool unit test per alert, and tests that fail when an alert breaks."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import CHART, REPO_ROOT, promtool, run

RULES = REPO_ROOT / "config" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")

# What issue 15 asks the rules to catch, by alert name.
REQUIRED = {
    "HeldarCameraDown": "camera down 5 min",
    "HeldarSegmentStale": "segment age > 3 x segment length",
    "HeldarGapRateHigh": "gap rate",
    "HeldarAnrFailing": "ANR failing",
    "HeldarDiskAlmostFull": "disk > 90 %",
    "HeldarDetectorBacklog": "detector backlog",
    "HeldarSupervisorNotRunning": "supervisor not running",
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> list[str]:
    return [r["alert"] for r in _rules() if "alert" in r]


def test_promtool_checks_the_rules() -> None:
    result = run(promtool(), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = run(promtool(), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_every_alert_has_firing_and_quiet_cases() -> None:
    alerts = _alerts()
    assert set(REQUIRED) <= set(alerts), f"missing: {set(REQUIRED) - set(alerts)}"
    assert len(alerts) == len(set(alerts))
    cases: dict[str, list[bool]] = {name: [] for name in alerts}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases[case["alertname"]].append(bool(case["exp_alerts"]))
    for name, fires in cases.items():
        assert True in fires, f"{name}: no test case where it fires"
        assert False in fires, f"{name}: no test case where it must stay quiet"
    for rule in _rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def _mutated_run(tmp_path: Path, alert: str, expr: str) -> str:
    """Run the unit tests against a copy of the rules where ``alert`` has ``expr``; promtool's output."""
    (tmp_path / "config").mkdir()
    (tmp_path / "tests" / "deploy").mkdir(parents=True)
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    (tmp_path / "config" / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / "tests" / "deploy" / "alerts_test.yml")
    result = run(promtool(), "test", "rules", "tests/deploy/alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"the unit tests still pass with {alert} set to {expr!r}"
    return result.stdout + result.stderr


@pytest.mark.parametrize("alert", _alerts())
def test_unit_tests_catch_an_alert_that_never_fires(tmp_path: Path, alert: str) -> None:
    out = _mutated_run(tmp_path, alert, "vector(1) == 0")
    assert f"alertname: {alert}" in out


@pytest.mark.parametrize("alert", _alerts())
def test_unit_tests_catch_an_alert_that_always_fires(tmp_path: Path, alert: str) -> None:
    out = _mutated_run(tmp_path, alert, "vector(1)")
    assert f"alertname: {alert}" in out


def test_the_chart_ships_the_same_rules() -> None:
    shipped = CHART / "files" / "alerts.yml"
    assert shipped.read_bytes() == RULES.read_bytes(), f"cp {RULES} {shipped}"
