"""config/grafana-dashboard.json and config/alerts.yml query only metrics that heldar's /metrics exposes.

The exposure check starts the real app (PostgreSQL, Ray, the supervisor actor, auth on), scrapes /metrics as
the admin and parses it: a family with no samples yet still has its # HELP / # TYPE lines. Metrics that the
rules and the dashboard need but this tree does not export yet are listed in PENDING with who adds them;
their tests are strict xfails, so the day a metric appears its test fails until it leaves the list.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.tools import CHART, REPO_ROOT, promtool, run

DASHBOARD = REPO_ROOT / "config" / "grafana-dashboard.json"
RULES = REPO_ROOT / "config" / "alerts.yml"
METRIC = re.compile(r"\bheldar_[a-z0-9_]+\b")
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$camera": ".*"}

# name -> (type assumed, who adds it). Keep this list short and honest.
PENDING: dict[str, tuple[str, str]] = {}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_queries() -> list[str]:
    out = []
    for panel in dashboard()["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            out.append(var["definition"])
    return out


def rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def queried_metrics() -> list[str]:
    return sorted({m for q in dashboard_queries() + rule_exprs() for m in METRIC.findall(q)})


# --- the dashboard file --------------------------------------------------------------------------


def test_dashboard_loads_and_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "heldar-overview" and board["title"] == "heldar"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "camera"}
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_covers_what_an_operator_needs() -> None:
    text = " ".join(dashboard_queries())
    for metric in (
        "heldar_camera_state",  # cameras by state
        "heldar_camera_last_segment_age_seconds",  # segment age
        "heldar_recording_gaps",  # gaps
        "heldar_recording_gaps_by_cause",  # and their causes
        "heldar_anr_fill_attempts_total",  # ANR outcomes
        "heldar_retention_deleted_bytes_total",  # retention
        "heldar_disk_used_ratio",  # disk
        "heldar_detector_queue_depth",  # detector queues
        "heldar_sampler_frames_dropped_total",  # and drops
        "heldar_http_request_duration_seconds_bucket",  # API latency
        "heldar_webhook_delivery_attempts_total",  # webhooks
        "heldar_event_streams_open",  # SSE
        "heldar_db_pool_connections_in_use",  # database pool
        "heldar_event_listener_up",  # event listener
    ):
        assert metric in text, metric


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables filled in) as a recording rule's expression."""
    rules = []
    for i, query in enumerate(dashboard_queries()):
        if query.startswith("label_values("):
            continue
        for var, value in GRAFANA_VARS.items():
            query = query.replace(var, value)
        assert "$" not in query, query
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool(), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(rules) >= 30


def test_promql_check_catches_a_broken_query(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": "max by (camera ("}]}]})
    )
    assert run(promtool(), "check", "rules", str(path)).returncode != 0


def test_the_chart_ships_the_same_dashboard() -> None:
    shipped = CHART / "files" / "grafana-dashboard.json"
    assert shipped.read_bytes() == DASHBOARD.read_bytes(), f"cp {DASHBOARD} {shipped}"


# --- against the real /metrics -------------------------------------------------------------------

ADMIN_USER = "metrics-admin"
ADMIN_PASSWORD = "Metr1cs-Passw0rd!"


@pytest.fixture(scope="module")
def scrape(new_database, ray_session: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """One scrape of the real app's /metrics as admin, with a camera registered and a request served."""
    from actors.handles import ensure_supervisor
    from api.app import create_app
    from api.auth_wiring import bootstrap_admin
    from api.supervisor_link import SupervisorLink
    from config import load_settings

    url = new_database()
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("metrics"),
        ray_namespace=ray_session,
        recorder_enabled=False,
        ai_enabled=False,
        webhooks_enabled=False,
        auth_enabled=True,
        bootstrap_admin_user=ADMIN_USER,
        bootstrap_admin_password=ADMIN_PASSWORD,
        password_hash_time_cost=1,
        password_hash_memory_kib=8,
        password_hash_parallelism=1,
    )
    supervisor = ensure_supervisor(settings, url)
    asyncio.run(bootstrap_admin(settings, url))
    try:
        with TestClient(create_app(settings, url, supervisor=SupervisorLink(ray_session))) as client:
            assert client.get("/metrics").status_code == 401
            login = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            client.cookies.clear()
            auth = {"Authorization": f"Bearer {token}"}
            camera = {"id": "cam-m", "name": "m", "main_stream_url": "rtsp://127.0.0.1:9/x"}
            assert client.post("/api/v1/cameras", json=camera, headers=auth).status_code == 201
            client.get("/healthz")  # one request, so the latency histogram has samples too
            response = client.get("/metrics", headers=auth)
            assert response.status_code == 200, response.text
        yield response.text
    finally:
        ray.get(supervisor.shutdown.remote(), timeout=60)
        ray.kill(supervisor)


@pytest.fixture(scope="module")
def exposed(scrape: str) -> dict[str, str]:
    """Sample names /metrics can carry -> family type (a family with no samples still has its # TYPE line)."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(scrape):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ("",))
        for suffix in suffixes:
            names[family.name + suffix] = family.type
    return names


def test_promtool_check_metrics_is_clean_on_a_live_scrape(scrape: str) -> None:
    """Prometheus' own linter (naming, units, _total only on counters, help text) finds nothing."""
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    assert "heldar_camera_up{" in scrape  # the scrape had per-camera series to check


def test_promtool_check_metrics_catches_a_gauge_named_total() -> None:
    bad = "# HELP heldar_things_total Things\n# TYPE heldar_things_total gauge\nheldar_things_total 1\n"
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0 and "_total" in result.stdout + result.stderr


def test_metrics_scrape_has_the_core_families(exposed: dict[str, str]) -> None:
    assert exposed["heldar_build_info"] == "gauge"
    assert exposed["heldar_camera_up"] == "gauge"
    assert exposed["heldar_camera_state"] == "gauge"
    assert exposed["heldar_cameras"] == exposed["heldar_segments"] == "gauge"
    assert exposed["heldar_webhook_delivery_attempts_total"] == "counter"
    assert exposed["heldar_webhook_delivery_duration_seconds_bucket"] == "histogram"
    for gauge in ("heldar_event_streams_open", "heldar_db_pool_connections", "heldar_db_pool_connections_in_use",
                  "heldar_db_pool_max_connections", "heldar_event_listener_up"):  # fmt: skip
        assert exposed[gauge] == "gauge", gauge
    assert exposed["heldar_event_listener_reconnects_total"] == "counter"
    assert exposed["heldar_http_request_duration_seconds_bucket"] == "histogram"
    assert exposed["heldar_anr_fill_attempts_total"] == "counter"


@pytest.mark.integration
@pytest.mark.parametrize(
    "metric",
    [
        pytest.param(
            m,
            marks=pytest.mark.xfail(
                strict=True, raises=AssertionError, reason=f"not exported yet: {PENDING[m][0]}, {PENDING[m][1]}"
            ),
        )
        if m in PENDING
        else m
        for m in queried_metrics()
    ],
)
def test_every_queried_metric_is_exposed(exposed: dict[str, str], metric: str) -> None:
    assert metric in exposed, f"{metric} is queried by the dashboard or an alert but /metrics does not expose it"


def test_pending_list_only_names_queried_metrics() -> None:
    assert set(PENDING) <= set(queried_metrics())
