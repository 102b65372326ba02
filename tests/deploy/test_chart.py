"""helm/heldar rendered by a real helm and every manifest validated offline.

Core kinds against Kubernetes' own OpenAPI schemas (kubernetes-validate, oldest and newest shipped), the
RayCluster against KubeRay's CRD schema (vendored in kuberay/), the values against values.schema.json, and
the wiring between the objects (one image, one Ray version, the shared volume, probes, secrets) by hand.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import CHART, REPO_ROOT, helm, run

KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
CRD = Path(__file__).parent / "kuberay" / "ray.io_rayclusters.yaml"
VARIANTS = {
    "default": CHART / "ci" / "external-values.yaml",
    "gpu-ingress-bundled": CHART / "ci" / "gpu-ingress-bundled-values.yaml",
}
CRD_KINDS = {"RayCluster", "ServiceMonitor", "PrometheusRule"}


@functools.cache
def render(variant: str, *sets: str) -> tuple[dict[str, Any], ...]:
    args = [helm(), "template", "rel", str(CHART), "--namespace", "nvr", "--kube-version", KUBE_VERSIONS[0]]
    args += ["-f", str(VARIANTS[variant])]
    for s in sets:
        args += ["--set", s]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def pod_specs(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in {"Deployment", "StatefulSet"}:
            yield name, d["spec"]["template"]["spec"]
        elif d["kind"] == "RayCluster":
            yield f"{name}/head", d["spec"]["headGroupSpec"]["template"]["spec"]
            for group in d["spec"]["workerGroupSpecs"]:
                yield f"{name}/{group['groupName']}", group["template"]["spec"]


def heldar_pods(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, s) for n, s in pod_specs(docs) if "postgresql" not in n]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must work offline: any connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- helm lint and render ------------------------------------------------------------------------


def test_helm_is_3_8_1() -> None:
    assert "v3.8.1" in run(helm(), "version", "--short").stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_is_clean(variant: str) -> None:
    result = run(helm(), "lint", "--strict", str(CHART), "-f", str(VARIANTS[variant]))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_default_render_has_the_expected_objects() -> None:
    kinds = sorted(d["kind"] for d in render("default"))
    assert kinds == sorted(
        ["ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "RayCluster"]
    )
    groups = [g["groupName"] for g in one(render("default"), "RayCluster")["spec"]["workerGroupSpecs"]]
    assert groups == ["cpu"]


def test_variant_render_has_gpu_ingress_postgres_and_monitoring() -> None:
    docs = render("gpu-ingress-bundled")
    for kind in ("Ingress", "StatefulSet", "ServiceMonitor", "PrometheusRule"):
        one(docs, kind)
    assert {d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")} == {
        "rel-heldar-settings",
        "rel-heldar-dashboard",
    }


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("postgresql.externalUrl=",), "heldar needs PostgreSQL"),
        (("recordings.persistence.accessMode=ReadWriteOnce",), "must be ReadWriteMany"),
        (("metrics.serviceMonitor.enabled=true",), "apiKeySecret.name is required"),
        (("ray.workers.cpu.replica=3",), "Additional property replica is not allowed"),
        (("settings.HELDAR_DATABASE_URL=postgresql://x",), "settings: Must not validate the schema (not)"),
        (("settings.anr_enabled=true",), "settings: Does not match pattern '^HELDAR_[A-Z0-9_]+$'"),
        (("ray.version=latest",), "ray.version: Does not match pattern"),
    ],
)
def test_broken_values_are_refused_with_a_clear_message(sets: tuple[str, ...], message: str) -> None:
    args = [helm(), "template", "rel", str(CHART), "--kube-version", KUBE_VERSIONS[0]]
    args += ["-f", str(VARIANTS["default"])]
    for s in sets:
        args += ["--set", s]
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def render_notes(variant: str, *sets: str, tmp: Path) -> str:
    """NOTES.txt as helm renders it (helm 3.8 renders NOTES only against a cluster, so through tpl)."""
    chart = tmp / "heldar"
    shutil.copytree(CHART, chart)
    (chart / "notes.tmpl").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text('notes: {{ tpl (.Files.Get "notes.tmpl") . | toJson }}\n')
    args = [helm(), "template", "rel", str(chart), "--namespace", "nvr", "--kube-version", KUBE_VERSIONS[0]]
    args += ["-f", str(VARIANTS[variant]), "--show-only", "templates/zz-notes.yaml"]
    for s in sets:
        args += ["--set", s]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["notes"])


def test_notes_tell_how_to_reach_the_api_and_the_admin_password(tmp_path: Path) -> None:
    notes = render_notes("default", tmp=tmp_path / "a")
    assert "kubectl -n nvr port-forward service/rel-heldar-api 8000:80" in notes
    assert "get secret rel-heldar-secrets" in notes and "HELDAR_BOOTSTRAP_ADMIN_PASSWORD" in notes
    assert "Ray 2.60.0: RayCluster rel-heldar" in notes
    assert "WARNING" not in notes
    notes = render_notes("gpu-ingress-bundled", tmp=tmp_path / "b")
    assert "https://nvr.example.com/docs" in notes
    assert "bundled single-server StatefulSet rel-heldar-postgresql" in notes
    assert "secret heldar-metrics-key" in notes


def test_read_write_once_needs_an_explicit_opt_in_and_the_notes_warn(tmp_path: Path) -> None:
    rwo = ("recordings.persistence.accessMode=ReadWriteOnce", "recordings.persistence.allowReadWriteOnce=true")
    assert one(render("default", *rwo), "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "WARNING: the recordings volume is not ReadWriteMany" in render_notes("default", *rwo, tmp=tmp_path)


# --- schema validation ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_core_manifests_are_valid_kubernetes(variant: str, kube: str) -> None:
    checked = 0
    for doc in render(variant):
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, kube, strict=True)  # raises with the failing path
        checked += 1
    assert checked == {"default": 6, "gpu-ingress-bundled": 10}[variant]


def test_kubernetes_validate_catches_a_typo() -> None:
    service = copy.deepcopy(one(render("default"), "Service"))
    service["spec"]["prots"] = service["spec"].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBE_VERSIONS[0], strict=True)


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused (the API server prunes them silently; a typo would vanish)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def raycluster_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "RayCluster"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert version["served"] and version["storage"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("variant", VARIANTS)
def test_raycluster_is_valid_against_kuberay_crd(variant: str) -> None:
    cluster = one(render(variant), "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in raycluster_validator().iter_errors(cluster)
    ]
    assert not errors, "\n".join(errors)


def test_crd_validation_catches_mistakes() -> None:
    cluster = one(render("default"), "RayCluster")
    broken = copy.deepcopy(cluster)
    broken["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-cpus"] = 4  # must be a string
    assert not raycluster_validator().is_valid(broken)
    broken = copy.deepcopy(cluster)
    broken["spec"]["headGroupSpec"]["rayStartParam"] = {}  # typo
    assert not raycluster_validator().is_valid(broken)
    broken = copy.deepcopy(cluster)
    del broken["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    assert not raycluster_validator().is_valid(broken)


@functools.cache
def values_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_values_are_valid_against_values_schema(variant: str) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    values_validator().validate(defaults)
    values_validator().validate(_merged(defaults, yaml.safe_load(VARIANTS[variant].read_text())))


def test_values_schema_rejects_mistakes() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for override in (
        {"api": {"replicas": 0}},
        {"api": {"ingres": {}}},
        {"recordings": {"persistence": {"accessMode": "ReadOnlyMany"}}},
        {"settings": {"anr_enabled": "true"}},
        {"ray": {"workers": {"gpu": {"gpusPerWorker": 0}}}},
        {"postgresql": {"externalUrl": "mysql://x"}},
    ):
        assert not values_validator().is_valid(_merged(defaults, override)), override


# --- wiring --------------------------------------------------------------------------------------


def _pinned_ray() -> str:
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [m.group(2) for d in deps if (m := re.fullmatch(r"ray(\[[a-z,]+\])?==([0-9.]+)", d.replace(" ", "")))]
    assert len(pins) == 1, f"pyproject must pin ray to one exact version, found {deps}"
    return pins[0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_image_and_one_ray_version_everywhere(variant: str) -> None:
    import ray

    docs = render(variant)
    images = {c["image"] for _, spec in heldar_pods(docs) for c in spec.get("initContainers", []) + spec["containers"]}
    assert images == {"heldar:0.1.0"}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert one(docs, "RayCluster")["spec"]["rayVersion"] == values["ray"]["version"] == _pinned_ray() == ray.__version__


@pytest.mark.parametrize("variant", VARIANTS)
def test_api_joins_the_ray_head_service_and_has_probes(variant: str) -> None:
    docs = render(variant)
    cluster = one(docs, "RayCluster")["metadata"]["name"]
    deployment = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-api"))
    spec = deployment["spec"]["template"]["spec"]
    api = spec["containers"][0]
    assert api["command"] == ["heldar", "api"]
    env = {e["name"]: e for e in api["env"]}
    assert env["HELDAR_RAY_ADDRESS"]["value"] == f"ray://{cluster}-head-svc.nvr.svc:10001"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {"http": 8000}
    assert spec["initContainers"][0]["command"] == ["heldar", "migrate"]
    service = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-api"))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_heldar_pod_mounts_the_shared_recordings_volume(variant: str) -> None:
    docs = render(variant)
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    settings = next(c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-settings"))
    root = settings["data"]["HELDAR_RECORDINGS_DIR"]
    pods = heldar_pods(docs)
    assert len(pods) == (4 if variant == "gpu-ingress-bundled" else 3)
    for name, spec in pods:
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        }
        assert claims == {"recordings": pvc["metadata"]["name"]}, name
        for c in spec["containers"]:
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            assert mounts["recordings"] == root, name
            assert {"configMapRef": {"name": settings["metadata"]["name"]}} in c["envFrom"], name


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_as_non_root_without_privilege(variant: str) -> None:
    for name, spec in pod_specs(render(variant)):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name


def test_gpu_group_asks_for_gpus_and_cpu_group_does_not() -> None:
    groups = {g["groupName"]: g for g in one(render("gpu-ingress-bundled"), "RayCluster")["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert "nvidia.com/gpu" not in json.dumps(groups["cpu"]["template"]["spec"]["containers"][0]["resources"])
    # cameras go where heldar_recorder is declared (heldar/supervision/placement.py): the CPU group only
    assert groups["cpu"]["resources"] == {"heldar_recorder": "1"}
    assert "resources" not in groups["gpu"]
    head = one(render("default"), "RayCluster")["spec"]["headGroupSpec"]
    assert "resources" not in head
    default_cpu = one(render("default"), "RayCluster")["spec"]["workerGroupSpecs"][0]
    assert default_cpu["resources"] == {"heldar_recorder": "1"}
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert (
        "num-cpus"
        not in one(render("default", "ray.head.schedulable=true"), "RayCluster")["spec"]["headGroupSpec"][
            "rayStartParams"
        ]
    )


def test_generated_secret_and_bundled_postgresql_agree() -> None:
    docs = render("gpu-ingress-bundled")
    secret = one(docs, "Secret")
    data = secret["stringData"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(data["HELDAR_BOOTSTRAP_ADMIN_PASSWORD"]) >= 16
    service = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-postgresql"))
    assert data["HELDAR_DATABASE_URL"] == (
        f"postgresql://heldar:{data['POSTGRES_PASSWORD']}@{service['metadata']['name']}:5432/heldar"
    )
    sts = one(docs, "StatefulSet")
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "POSTGRES_PASSWORD",
    }
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_secret_values_reach_only_the_processes_that_need_them() -> None:
    docs = render("gpu-ingress-bundled")
    secret = one(docs, "Secret")["metadata"]["name"]
    for name, spec in heldar_pods(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "valueFrom" in e}
            assert refs["HELDAR_DATABASE_URL"] == {"name": secret, "key": "HELDAR_DATABASE_URL"}, name
            expected = {"HELDAR_DATABASE_URL"} | ({"HELDAR_BOOTSTRAP_ADMIN_PASSWORD"} if c["name"] == "api" else set())
            assert set(refs) == expected, f"{name}/{c['name']}"
            assert not any("secretRef" in e for e in c["envFrom"]), name


def test_existing_secret_replaces_the_generated_one() -> None:
    docs = render("default", "secrets.existingSecret=site-heldar", "postgresql.externalUrl=")
    assert not by_kind(docs, "Secret")
    for _, spec in heldar_pods(docs):
        for c in spec["containers"]:
            refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e]
            assert refs and set(refs) == {"site-heldar"}


def test_external_postgresql_url_goes_to_the_secret() -> None:
    docs = render("default")
    url = yaml.safe_load(VARIANTS["default"].read_text())["postgresql"]["externalUrl"]
    assert one(docs, "Secret")["stringData"]["HELDAR_DATABASE_URL"] == url
    assert not by_kind(docs, "StatefulSet")


def test_prometheus_rule_ships_config_alerts_and_service_monitor_scrapes_the_api() -> None:
    docs = render("gpu-ingress-bundled")
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load((REPO_ROOT / "config" / "alerts.yml").read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    monitor = one(docs, "ServiceMonitor")
    service = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-api"))
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "heldar-metrics-key", "key": "api-key"},
    }
    dashboard = next(c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard"))
    assert json.loads(dashboard["data"]["heldar.json"]) == json.loads(
        (REPO_ROOT / "config" / "grafana-dashboard.json").read_text()
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_ingress_routes_to_the_api_service_with_tls() -> None:
    docs = render("gpu-ingress-bundled")
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["nvr.example.com"], "secretName": "nvr-example-com-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-heldar-api", "port": {"name": "http"}}
